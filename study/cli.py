"""``plasticity study``: launch, resume and list Ray Tune + Optuna studies."""

from __future__ import annotations

import argparse

from plasticity.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_not_yet)


def _not_yet(args: argparse.Namespace) -> int:
    raise UserError("studies are not available in this version")

"""``plasticity analyze``: figures, tables and a report from run or study folders."""

from __future__ import annotations

import argparse

from plasticity.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_not_yet)


def _not_yet(args: argparse.Namespace) -> int:
    raise UserError("analysis is not available in this version")

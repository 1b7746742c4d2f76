"""Dataclass fields as the one source of a schema: their docstrings, their types, and the
command-line flags built from them.

A field is documented CleanRL-style, by a string literal right under it; :func:`field_docs`
reads those strings from the class source, so ``--help``, a study file's documentation and the
code read the same words. :func:`add_flags` turns fields into argparse flags (``--batch-size``
for ``batch_size``; ``--x/--no-x`` for a bool); values arrive as typed Python values or None
(not given), and range checks stay in the dataclass, the one place that validates.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any


@cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` of a dataclass, from the string literal under each field (empty
    where the source is unavailable, e.g. a frozen executable)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:]):
        is_doc = isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and is_doc:
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def base_type(annotation: Any) -> Any:
    """``float`` for ``float | None``; the annotation itself otherwise."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def field_types(cls: type) -> dict[str, Any]:
    """``{field: base type}`` of a dataclass (Optional unwrapped)."""
    hints = typing.get_type_hints(cls)
    return {f.name: base_type(hints[f.name]) for f in dataclasses.fields(cls)}


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


_PARSERS = {int: parse_int, float: parse_float, str: str}


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    fields: Iterable[str],
    names: Mapping[str, str] | None = None,
) -> None:
    """One flag per field of ``cls`` in ``fields``: ``--field-name`` (or ``names[field]``),
    help from the field's docstring, default None (so "not given" is visible). Sequences
    (``tuple[str, ...]``) are taken as one comma-separated string."""
    docs, kinds, names = field_docs(cls), field_types(cls), names or {}
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for name in fields:
        flag = "--" + names.get(name, name).replace("_", "-")
        kind, help_text = kinds[name], docs.get(name, "")
        if defaults[name] not in (None, dataclasses.MISSING):
            shown = defaults[name]
            shown = ",".join(shown) if isinstance(shown, tuple) else shown
            help_text += f" [default: {shown}]"
        if kind is bool:
            parser.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(
                flag,
                dest=name,
                type=_PARSERS.get(kind, str),
                default=None,
                metavar=names.get(name, name).upper(),
                help=help_text,
            )


def given(args: argparse.Namespace, fields: Iterable[str]) -> dict[str, Any]:
    """The flags of ``fields`` that were given on the command line."""
    return {k: getattr(args, k) for k in fields if getattr(args, k, None) is not None}

"""Strategies from outside this package: ``module:Class`` references and the
``plasticity.strategies`` entry-point group.

A researcher's method needs no fork: ``--strategies reset,mylab.plast:MyStrategy`` imports
``mylab.plast`` and takes its ``MyStrategy``; a package that declares, in its pyproject.toml::

    [project.entry-points."plasticity.strategies"]
    reinit_last = "reinit_last_layers:ReinitLastLayers"

makes ``reinit_last`` a plain name, listed beside the built-ins. Either way the class must be a
:class:`~plasticity.strategies.base.Strategy` whose ``Params`` is a dataclass with a default for
every field (what :func:`~plasticity.strategies.base.parse_params` builds). Every way this can
go wrong is one :class:`UserError` line naming the reference; an exception raised while the
user's module imports is summarised (type, message, file and line), not shown as a traceback.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import logging
from typing import Any

from plasticity.errors import UserError, one_line
from plasticity.strategies.base import Strategy

log = logging.getLogger(__name__)

GROUP = "plasticity.strategies"
"""The entry-point group a package registers strategies under."""


def is_reference(name: str) -> bool:
    """``module:Class`` (a reference into user code) rather than a registered name."""
    return ":" in name


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed packages' strategies by name (first one wins on a duplicate name)."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def from_reference(reference: str) -> type[Strategy]:
    """The class ``reference`` (``module:Class``, ``Class`` may be dotted) names, checked."""
    module_name, _, attr = reference.partition(":")
    parts = attr.split(".")
    if not module_name or not all(p.isidentifier() for p in [*module_name.split("."), *parts]):
        raise UserError(
            f"strategy {reference!r}: a reference into your code is MODULE:CLASS, "
            "e.g. mylab.plast:MyStrategy"
        )
    module = _import(module_name, reference)
    obj: Any = module
    for part in parts:
        if not hasattr(obj, part):
            raise UserError(f"strategy {reference!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    return checked(obj, f"strategy {reference!r}")


def from_entry_point(ep: importlib.metadata.EntryPoint) -> type[Strategy]:
    """The class an entry point of :data:`GROUP` names, checked."""
    dist = getattr(ep, "dist", None)
    where = f"strategy {ep.name!r} (entry point {ep.value!r}" + (
        f" of {dist.name} {dist.version})" if dist is not None else ")"
    )
    try:
        obj = ep.load()
    except Exception as e:  # the plugin's own import: any exception, reported in one line
        raise UserError(f"{where} failed to import: {one_line(e)}") from None
    return checked(obj, where)


def checked(obj: Any, where: str) -> type[Strategy]:
    """``obj`` if it is a usable strategy class; else a :class:`UserError` saying why."""
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        kind = type(obj).__name__ if not isinstance(obj, type) else f"class {obj.__name__}"
        raise UserError(
            f"{where} is not a plasticity Strategy (a {kind}); subclass "
            "plasticity.strategies.Strategy"
        )
    params = obj.Params
    if not (isinstance(params, type) and dataclasses.is_dataclass(params)):
        raise UserError(f"{where}: its Params must be a dataclass, got {params!r}")
    try:
        params()
    except Exception as e:  # a field without a default, a validate() that fails on them
        raise UserError(
            f"{where}: its Params() must build from defaults alone ({one_line(e)})"
        ) from None
    return obj


def _import(module_name: str, reference: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise UserError(
                f"strategy {reference!r}: no module named {e.name!r} (is it installed, or on "
                "PYTHONPATH?)"
            ) from None
        raise UserError(f"strategy {reference!r} failed to import: {one_line(e)}") from None
    except Exception as e:  # the user's module raised while importing
        raise UserError(f"strategy {reference!r} failed to import: {one_line(e)}") from None

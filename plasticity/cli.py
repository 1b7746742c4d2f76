"""``plasticity``: the one console entry point.

Subcommands: ``run`` (one experiment, in-process, no Ray), ``models``, ``presets``,
``strategies`` (built-in and plugins), ``check-strategy`` (the conformance kit, see
:mod:`plasticity.conformance`), ``study`` (Ray Tune + Optuna; see :mod:`study.cli`) and
``analyze`` (see :mod:`analysis.cli`).
Every error a user can cause ends in one line on stderr and a non-zero exit; nothing that
already exists is deleted or overwritten unless ``--overwrite`` says so.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plasticity import __version__
from plasticity.errors import UserError

log = logging.getLogger("plasticity")

# Subcommands that live in other layers: (name, module, help). Their modules keep heavy imports
# (Ray, matplotlib) inside functions, so building the parser stays cheap.
EXTERNAL = (
    ("study", "study.cli", "Ray Tune + Optuna studies: validate, launch, resume, presets"),
    ("analyze", "analysis.cli", "figures, tables and a report from run or study folders"),
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (not usage + error)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), ""))
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"plasticity: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plasticity: interrupted; results written so far are kept", file=sys.stderr)
        return 130
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        reason = "disk full" if e.errno == errno.ENOSPC else e.strerror or str(e)
        print(f"plasticity: error: cannot write or read{where}: {reason}", file=sys.stderr)
        return 1


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line. With ``command`` (the subcommand ``main`` sees), the ``run`` flags are
    built only for ``run``: they come from the strategies' parameters, which import torch, and
    ``plasticity --help`` or ``plasticity study status`` must answer without it."""
    parser = _Parser(prog="plasticity", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"plasticity {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="one experiment in-process (no Ray)")
    if command in (None, "run"):
        add_run_parser(run)
    models = sub.add_parser("models", help="built-in architectures and parameter counts")
    models.add_argument(
        "--hidden", metavar="W1,W2,...", help="hidden widths to list instead of each model's own"
    )
    models.set_defaults(func=cmd_models)
    sub.add_parser("presets", help="named run settings (the paper's eight, demo)").set_defaults(
        func=cmd_presets
    )
    sub.add_parser(
        "strategies", help="the strategies by name: built-in and installed plugins"
    ).set_defaults(func=cmd_strategies)
    check = sub.add_parser(
        "check-strategy",
        help="run a strategy (NAME or MODULE:CLASS) through the contract every built-in passes",
    )
    check.add_argument("strategy", help="a name from `plasticity strategies`, or MODULE:CLASS")
    check.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyperparameter of the strategy (repeatable; default: its Params' defaults)",
    )
    check.set_defaults(func=cmd_check_strategy)
    for name, module, help_text in EXTERNAL:
        mod = importlib.import_module(module)
        mod.add_arguments(sub.add_parser(name, help=help_text))
    return parser


# -- run ---------------------------------------------------------------------------------------
# `plasticity run` flags are RunConfig's fields (help from their docstrings); these names differ.
FLAG_NAMES = {"objective": "task"}
# Strategy parameters common enough for a flag of their own: flag -> (strategy, parameter).
SHORTCUTS = {
    "schedule": ("expanded", "schedule"),
    "alpha0": ("expanded", "alpha0"),
    "ramp": ("expanded", "ramp"),
    "alpha_per_step": ("expanded", "per_step"),
    "reset_optimizer": ("continuous", "reset_optimizer"),
}


def add_run_parser(p: argparse.ArgumentParser) -> None:
    from plasticity import strategies
    from plasticity.config import FIELDS, RunConfig
    from plasticity.fields import add_flags, field_docs, field_types, parse_float

    p.add_argument("--preset", help="start from named settings (see `plasticity presets`)")
    add_flags(p, RunConfig, [f for f in FIELDS if f != "strategy_params"], FLAG_NAMES)
    p.add_argument(
        "--betas",
        type=lambda text: tuple(parse_float(b) for b in text.split(",")),
        metavar="B1,B2",
        help="Adam/AdamW β1 and β2 at once (the same as --beta1 B1 --beta2 B2)",
    )
    for flag, (strategy, key) in SHORTCUTS.items():
        params = strategies.get(strategy).Params
        kind, doc = field_types(params)[key], field_docs(params).get(key, "")
        name, help_text = "--" + flag.replace("_", "-"), f"{strategy}: {doc}"
        if kind is bool:
            p.add_argument(name, action="store_true", default=None, help=help_text)
        else:
            p.add_argument(name, type=kind if kind is str else parse_float, help=help_text)
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="STRATEGY.KEY=VALUE",
        help="any strategy hyperparameter, e.g. expanded.schedule=cosine (repeatable)",
    )
    p.add_argument("--out", help="output folder (default runs/<name from config and seed>)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.set_defaults(func=cmd_run)


def config_from_args(args: argparse.Namespace) -> Any:
    """Preset, then flags, then ``--param``: the validated :class:`RunConfig`."""
    from plasticity.config import FIELDS, RunConfig
    from plasticity.fields import given
    from plasticity.presets import preset

    d: dict[str, Any] = preset(args.preset) if args.preset else {}
    d.update(given(args, [f for f in FIELDS if f != "strategy_params"]))
    if args.betas is not None:
        if len(args.betas) != 2:
            raise UserError(f"--betas wants B1,B2, got {len(args.betas)} value(s)")
        d["beta1"], d["beta2"] = args.betas
    params: dict[str, dict[str, Any]] = {}
    for flag, (strategy, key) in SHORTCUTS.items():
        if getattr(args, flag) is not None:
            params.setdefault(strategy, {})[key] = getattr(args, flag)
    for item in args.param:
        strategy, key, value = parse_param(item)
        params.setdefault(strategy, {})[key] = value
    if params:
        d["strategy_params"] = params
    return RunConfig.from_dict(d)


def parse_param(item: str) -> tuple[str, str, str]:
    """``STRATEGY.KEY=VALUE`` as its three parts; the key is what follows the last dot, so a
    strategy may be ``module.path:Class`` (``mylab.plast:MyStrategy.rate=0.1``)."""
    name, eq, value = item.partition("=")
    strategy, _, key = name.rpartition(".")
    if not (strategy.strip() and key.strip() and eq) or ":" in key:
        raise UserError(f"--param wants STRATEGY.KEY=VALUE, got {item!r}")
    return strategy.strip(), key.strip(), value.strip()


def run_name(config: Any) -> str:
    """A folder name from the config and seed, CleanRL style."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{config.model}-{config.dataset}-{config.objective}-s{config.seed}-{stamp}"


RESULT_FILES = ("config.json", "records.parquet")


def cmd_run(args: argparse.Namespace) -> int:
    import pandas as pd

    from plasticity.loop import iter_experiment, prepare

    config = config_from_args(args)
    out = Path(args.out) if args.out else Path("runs") / run_name(config)
    existing = [f for f in RESULT_FILES if (out / f).exists()]
    if existing and not args.overwrite:
        raise UserError(
            f"{out} already holds results ({', '.join(existing)}); "
            "pass --overwrite to replace them or choose another --out"
        )
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    data = prepare(config)  # fails (missing data, bad device) before anything is written
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", run_metadata(config, str(data.device)))

    rows: list[dict[str, Any]] = []
    progress = RunProgress(config)
    try:
        for rec in iter_experiment(config, data):
            rows.append(rec.to_dict())
            progress.update(rec)
            last_of_task = rec.epoch == config.epochs - 1 and rec.strategy == config.strategies[-1]
            if last_of_task:  # every strategy has finished this task: save what we have
                write_parquet(out / "records.parquet", pd.DataFrame(rows))
                log.info("task %d done (%d records)", rec.task, len(rows))
    finally:
        progress.close()
        if rows:  # also on Ctrl-C: keep every finished epoch
            write_parquet(out / "records.parquet", pd.DataFrame(rows))
    print(summary_table(pd.DataFrame(rows)))
    print(f"wrote {out}/records.parquet ({len(rows)} records) and {out}/config.json")
    return 0


class RunProgress:
    """One progress bar per strategy (tqdm, on stderr): the task it is on, its epochs of all
    tasks with an ETA, and the last test accuracy. Strategies advance task by task together,
    so each bar's ETA is that of the whole run. Silent unless ``file`` is a terminal."""

    def __init__(self, config: Any, file: Any = None, enabled: bool | None = None) -> None:
        from tqdm import tqdm

        file = file if file is not None else sys.stderr
        if enabled is None:
            enabled = file.isatty()
        self.restarts = config.restarts
        self.width = max(len(s) for s in config.strategies)
        self.bars = {
            s: tqdm(
                total=(config.restarts + 1) * config.epochs,
                desc=self._desc(s, 0),
                unit="epoch",
                position=i,
                file=file,
                disable=not enabled,
                dynamic_ncols=True,
            )
            for i, s in enumerate(config.strategies)
        }

    def _desc(self, strategy: str, task: int) -> str:
        return f"{strategy:>{self.width}} task {task}/{self.restarts}"

    def update(self, rec: Any) -> None:
        bar = self.bars[rec.strategy]
        bar.set_description(self._desc(rec.strategy, rec.task), refresh=False)
        bar.set_postfix(test_acc=f"{rec.test_acc:.3f}", refresh=False)
        bar.update(1)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def run_metadata(config: Any, device: str) -> dict[str, Any]:
    import torch

    return {
        "kind": "plasticity-run",
        "version": __version__,
        "config": config.to_dict(),
        "device": device,
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_parquet(path: Path, frame: Any) -> None:
    """Atomic: a failure (disk full) leaves the previous file as it was."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def summary_table(frame: Any) -> str:
    """Per strategy, the objectives of :mod:`plasticity.metrics` over restarts 1..R (task 0
    alone when no restart has been recorded yet), and the tasks seen."""
    from plasticity.metrics import OBJECTIVES, per_run

    if frame.empty:
        return "no records"
    table = per_run(frame, ["strategy"]).set_index("strategy")
    table.insert(0, "tasks", table.pop("restarts_seen") + 1)
    return table[["tasks", *OBJECTIVES]].round(4).to_string()


# -- models, presets ---------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    from plasticity.data import DATASETS
    from plasticity.models import (
        ACTIVATIONS,
        DOUBLING,
        MODELS,
        architecture,
        crelu_spec,
        describe,
        parameter_count,
        with_factors,
    )

    hidden = getattr(args, "hidden", None)
    rows = [("model", "dataset", "activation", "parameters", "with norm: layer", "layers")]
    for model in MODELS:
        for dataset, info in DATASETS.items():
            if dataset == "mnist-5k":
                continue  # same shapes as mnist
            spec = with_factors(architecture(model, dataset), hidden)
            for act in ACTIVATIONS:
                layers = describe(
                    crelu_spec(spec, info.shape) if act in DOUBLING else spec, info.shape, act
                )
                count = parameter_count(model, dataset, act, hidden)
                with_norm = parameter_count(model, dataset, act, hidden, "layer")
                rows.append((model, dataset, act, f"{count:,}", f"{with_norm:,}", layers))
    print(_format(rows))
    print(
        "mnist-5k uses the mnist architectures; crelu and fourier (the crelu and fourier "
        "strategies) narrow the hidden layers to keep the parameter count within 1%; norm: layer "
        "(also what the nap strategy adds) adds a scale and a shift per hidden unit (channel, for "
        "a conv); --hidden W1,W2,... lists other widths."
    )
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from plasticity.presets import PRESETS

    rows = [("preset", "dataset", "model", "objective", "epochs", "restarts", "lr", "optimizer")]
    for name, p in PRESETS.items():
        rows.append(
            (
                name,
                p["dataset"],
                p["model"],
                p["objective"],
                str(p["epochs"]),
                str(p["restarts"]),
                str(p.get("lr", "paper")),
                f"{p['optimizer']} β=({p['beta1']}, {p['beta2']}) ε={p['eps']} "
                f"wd={p['weight_decay']}",
            )
        )
    print(_format(rows))
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    import dataclasses

    from plasticity import strategies

    rows = [("strategy", "from", "parameters")]
    for name in strategies.names():
        try:
            cls = strategies.get(name)
        except UserError as e:  # a broken plugin is listed, with why, not fatal to the list
            rows.append((name, "unusable", str(e)))
            continue
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Params))
        rows.append((name, strategies.origin(name), fields or "-"))
    print(_format(rows))
    print("Also MODULE:CLASS, a Strategy subclass in your own code (see README, 'Your strategy').")
    return 0


def cmd_check_strategy(args: argparse.Namespace) -> int:
    """The conformance kit (:mod:`plasticity.conformance`): one line per rule; exit 1 if a rule
    fails. An unusable strategy or parameter is a one-line error before any rule runs."""
    from plasticity import conformance, strategies

    params = {}
    for item in args.param:
        key, eq, value = item.partition("=")
        if not (key.strip() and eq):
            raise UserError(f"--param wants KEY=VALUE, got {item!r}")
        params[key.strip()] = value.strip()
    name = args.strategy
    conformance.tiny_config(name, params)  # resolves and validates: a UserError, if any, now
    print(f"{name} ({strategies.origin(name)}) on {conformance.SETTING}", flush=True)
    start, failed = time.perf_counter(), 0
    for outcome in conformance.check(name, params):
        print(f"  {outcome.line()}", flush=True)
        failed += not outcome.ok
    passed = len(conformance.RULES) - failed
    verdict = "conforms" if not failed else f"breaks {failed} rule(s)"
    print(
        f"{name} {verdict}: {passed} of {len(conformance.RULES)} rules pass "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 1 if failed else 0


def _format(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


if __name__ == "__main__":
    sys.exit(main())

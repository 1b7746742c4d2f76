"""``plasticity study``: launch, resume, inspect and list Ray Tune + Optuna studies.

Heavy imports (Ray, Optuna) happen inside the commands, so ``plasticity --help`` stays fast.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from plasticity.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="study_command", required=True, parser_class=type(p))
    launch = sub.add_parser("launch", help="start a study (default: the embedded demo)")
    launch.add_argument("file", nargs="?", help="study file (YAML)")
    launch.add_argument("--preset", help="a shipped study (see `plasticity study presets`)")
    launch.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    launch.add_argument("--storage", help="where studies live: path, NFS path, s3:// or gs:// URI")
    launch.add_argument("--name", help="study name (default: the file's)")
    launch.add_argument("--no-analysis", action="store_true", help="skip the analysis report")
    launch.set_defaults(func=cmd_launch)
    resume = sub.add_parser("resume", help="continue an interrupted study")
    resume.add_argument("path", help="the study folder (STORAGE/NAME)")
    resume.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    resume.add_argument("--no-analysis", action="store_true", help="skip the analysis report")
    resume.set_defaults(func=cmd_resume)
    status = sub.add_parser("status", help="a study's phases, trials and best so far")
    status.add_argument("path", help="the study folder (STORAGE/NAME), local or URI")
    status.set_defaults(func=cmd_status)
    listing = sub.add_parser("list", help="the studies in a storage, one line each")
    listing.add_argument("storage", nargs="?", default="studies", help="[default: studies]")
    listing.set_defaults(func=cmd_list)
    presets = sub.add_parser("presets", help="list the shipped studies")
    presets.set_defaults(func=cmd_presets)


def cmd_launch(args: argparse.Namespace) -> int:
    from study.driver import launch
    from study.spec import load_spec, preset_path

    if args.file and args.preset:
        raise UserError("give a study file or --preset, not both")
    name = args.name
    if not args.file and not name:
        # a preset is a template: every launch of it is a new study, named by the time
        name = f"{args.preset or 'demo'}-{time.strftime('%Y%m%d-%H%M%S')}"
    source = args.file or preset_path(args.preset or "demo")
    spec = load_spec(source, storage=args.storage, name=name)
    root = launch(spec, address=args.address)
    return finish(root, args)


def cmd_resume(args: argparse.Namespace) -> int:
    from study.driver import resume

    root = resume(args.path, address=args.address)
    return 0 if root is None else finish(root, args)


def finish(root: Any, args: argparse.Namespace | None) -> int:
    """Print and write the summary, then the analysis report into STUDY/analysis."""
    import pandas as pd

    from analysis.render import markdown_table
    from study.driver import open_study, summary_rows

    folder, spec, state = open_study(str(root))
    table = pd.DataFrame(summary_rows(spec, state))
    folder.write_text("summary.csv", table.to_csv(index=False))
    folder.write_text("summary.md", markdown_table(table))
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(table.to_string(index=False))
    print(f"study {spec.name!r} finished: {folder.root}")
    if args is not None and getattr(args, "no_analysis", False):
        return 0
    if folder.uri:
        print(
            "analysis reads local or NFS folders: copy the study here, then run "
            f"`plasticity analyze <folder>` (from {folder.root})"
        )
        return 0
    from analysis.load import load
    from analysis.report import write_report

    loaded = load([folder.root])
    report = write_report(loaded, Path(folder.root) / "analysis")
    print(f"analysis: {report}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from study.status import status_text

    print(status_text(args.path))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from study.status import list_text

    print(list_text(args.storage))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from study.spec import load_spec, preset_names, preset_path

    for name in preset_names():
        spec = load_spec(preset_path(name))
        s = spec.setting
        print(
            f"{name:26s} {s.model}/{s.dataset} {s.objective}, {s.restarts} restarts, "
            f"{s.optimizer} β2={s.beta2} wd={s.weight_decay}, "
            f"{len(spec.strategies)} strategies x {spec.budget.trials_per_strategy} trials, "
            f"{spec.budget.eval_seeds} eval seeds"
        )
    return 0

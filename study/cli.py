"""``plasticity study``: the command line of validate, launch, resume, extend, status, list,
presets and bench. It only parses: the commands are :mod:`study.commands` (and :mod:`study.status`),
imported when one runs, so that ``plasticity --help`` and ``plasticity study --help`` import
neither torch nor Ray (nor pydantic).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from plasticity.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="study_command", required=True, parser_class=type(p))
    launch = sub.add_parser("launch", help="start a study (default: the embedded demo)")
    _study_source(launch)
    launch.add_argument("--no-analysis", action="store_true", help="skip the analysis report")
    launch.add_argument(
        "--dry-run", action="store_true", help="check and print the plan, write nothing (validate)"
    )
    launch.set_defaults(func=cmd_launch)
    validate = sub.add_parser(
        "validate", help="check a study file against the cluster and print its plan; writes nothing"
    )
    _study_source(validate)
    validate.set_defaults(func=cmd_validate)
    resume = sub.add_parser("resume", help="continue an interrupted study")
    resume.add_argument("path", help="the study folder (STORAGE/NAME)")
    resume.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    resume.add_argument("--no-analysis", action="store_true", help="skip the analysis report")
    resume.set_defaults(func=cmd_resume)
    extend = sub.add_parser(
        "extend",
        help="more search trials per strategy, then a new evaluation where the best changed",
    )
    extend.add_argument("path", help="the study folder (STORAGE/NAME)")
    extend.add_argument(
        "--trials", type=int, required=True, help="search trials to add per strategy"
    )
    extend.add_argument("--strategy", help="extend only this strategy (default: every one)")
    extend.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    extend.add_argument("--no-analysis", action="store_true", help="skip the analysis report")
    extend.set_defaults(func=cmd_extend)
    status = sub.add_parser("status", help="a study's phases, trials and best so far")
    status.add_argument("path", help="the study folder (STORAGE/NAME), local or URI")
    status.set_defaults(func=cmd_status)
    listing = sub.add_parser("list", help="the studies in a storage, one line each")
    listing.add_argument("storage", nargs="?", default="studies", help="[default: studies]")
    listing.set_defaults(func=cmd_list)
    presets = sub.add_parser("presets", help="list the shipped studies")
    presets.set_defaults(func=cmd_presets)
    bench = sub.add_parser(
        "bench",
        help="benchmark a strategy through the scenario suite beside the shipped strategies, "
        "then analyse every scenario together",
    )
    bench.add_argument(
        "--with",
        dest="with_strategies",
        action="append",
        default=[],
        required=True,
        metavar="STRATEGY",
        help="the strategy to benchmark (a name or MODULE:CLASS; repeatable)",
    )
    bench.add_argument(
        "--scenarios",
        default="all",
        help="comma-separated scenarios (e.g. class-shuffle,full-shuffle) or all [default: all]",
    )
    bench.add_argument("--storage", help="where the studies live [default: the presets' studies]")
    bench.add_argument(
        "--out", help="the analysis folder [default: bench-with-STRATEGY in this folder]"
    )
    bench.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    bench.add_argument(
        "--dry-run", action="store_true", help="check everything and print the plan; write nothing"
    )
    bench.set_defaults(func=cmd_bench)


def _study_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="study file (YAML)")
    p.add_argument("--preset", help="a shipped study (see `plasticity study presets`)")
    p.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    p.add_argument("--storage", help="where studies live: path, NFS path, s3:// or gs:// URI")
    p.add_argument("--name", help="study name (default: the file's)")
    p.add_argument(
        "--with",
        dest="with_strategies",
        action="append",
        default=[],
        metavar="STRATEGY",
        help="compare this strategy too (a name or MODULE:CLASS), with its default search space "
        "on the study's budget and seeds, e.g. a new method through a scenario (repeatable)",
    )


def load_from_args(args: argparse.Namespace) -> Any:
    """The validated study of a file or ``--preset`` (default: the demo)."""
    from study.spec import load_spec, preset_path

    if args.file and args.preset:
        raise UserError("give a study file or --preset, not both")
    name = args.name
    if not args.file and not name:
        # a preset is a template: every launch of it is a new study, named by the time
        name = f"{args.preset or 'demo'}-{time.strftime('%Y%m%d-%H%M%S')}"
    source = args.file or preset_path(args.preset or "demo")
    return load_spec(source, storage=args.storage, name=name, add_strategies=args.with_strategies)


def cmd_launch(args: argparse.Namespace) -> int:
    from study import commands

    spec = load_from_args(args)
    if args.dry_run:
        return commands.validate(spec, args.address)
    root = commands.launch(spec, address=args.address)
    return commands.finish(root, analysis=not args.no_analysis)


def cmd_validate(args: argparse.Namespace) -> int:
    from study import commands

    return commands.validate(load_from_args(args), args.address)


def cmd_resume(args: argparse.Namespace) -> int:
    from study import commands

    root = commands.resume(args.path, address=args.address)
    return 0 if root is None else commands.finish(root, analysis=not args.no_analysis)


def cmd_extend(args: argparse.Namespace) -> int:
    from study import commands

    root = commands.extend(args.path, args.trials, strategy=args.strategy, address=args.address)
    return commands.finish(root, analysis=not args.no_analysis)


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from study import bench

    strategies = args.with_strategies
    studies = bench.bench_studies(strategies, bench.chosen_scenarios(args.scenarios), args.storage)
    print(bench.plan_text(studies, strategies), flush=True)
    if args.dry_run:
        print("valid; nothing written (each study checks the cluster's resources as it starts)")
        return 0
    out = Path(args.out or f"bench-with-{bench.added_text(strategies)}")
    report = bench.run_bench(studies, out, address=args.address)
    print(bench.tables_text(out, report))
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
    from study.status import presets_text

    print(presets_text())
    return 0

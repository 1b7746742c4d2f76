"""``plasticity study bench --with STRATEGY``: a user's method through the scenario suite.

For each chosen scenario preset, the preset plus the strategy (``--with``: its default space on
the preset's budget ladder, seeds and expectations) is one study named after both, so running the
same command again finds it: launched when absent, resumed when unfinished, skipped when
finished. The studies run one after another, then one analysis reads them all and writes the
per-scenario directions and the aggregate across scenarios.

Everything is checked before the first study starts (every preset loads with the strategy, any
existing study of that name was launched from the same spec), so a user error writes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from plasticity.errors import UserError
from study.plan import eval_counts, rungs, search_plan
from study.spec import StudySpec, load_spec, preset_names, preset_path
from study.store.folder import StudyFolder

SCENARIO_PREFIX = "scenario-"

Action = Literal["launch", "resume", "skip"]


@dataclass(frozen=True)
class BenchStudy:
    """One scenario of the bench: its preset, the study (preset + the user's strategies) and
    what running the bench will do with it."""

    scenario: str
    """The preset's name without ``scenario-`` (e.g. ``class-shuffle``)."""
    spec: StudySpec
    action: Action
    """launch (no study of that name), resume (unfinished) or skip (finished)."""

    @property
    def root(self) -> str:
        return f"{self.spec.storage.rstrip('/')}/{self.spec.name}"


def scenario_names() -> list[str]:
    """The shipped scenarios, without the ``scenario-`` prefix of their presets."""
    return [
        p.removeprefix(SCENARIO_PREFIX) for p in preset_names() if p.startswith(SCENARIO_PREFIX)
    ]


def chosen_scenarios(text: str) -> list[str]:
    """``--scenarios``: ``all`` or a comma-separated list (with or without ``scenario-``);
    :class:`UserError` naming the first unknown one."""
    known = scenario_names()
    if text.strip() == "all":
        return known
    chosen = [s.strip().removeprefix(SCENARIO_PREFIX) for s in text.split(",") if s.strip()]
    if not chosen:
        raise UserError(f"--scenarios is empty; choose from all, {', '.join(known)}")
    for s in chosen:
        if s not in known:
            raise UserError(f"unknown scenario {s!r}; choose from all, {', '.join(known)}")
    return list(dict.fromkeys(chosen))


def bench_name(scenario: str, strategies: list[str]) -> str:
    """The study's name: the scenario and the strategies it adds, with the characters a study
    name may not hold (``:`` of MODULE:CLASS) made ``-``; the same command gives the same name,
    so a second run resumes or skips it."""
    return f"bench-{scenario}-with-{added_text(strategies)}"


def added_text(strategies: list[str]) -> str:
    """The added strategies as a piece of a study or folder name."""
    return "_and_".join(re.sub(r"[^A-Za-z0-9_.-]", "-", s) for s in strategies)


def bench_studies(
    strategies: list[str], scenarios: list[str], storage: str | None
) -> list[BenchStudy]:
    """Every chosen scenario's study and its action; every check before anything runs."""
    if not strategies:
        raise UserError("give the strategy to benchmark: --with NAME or --with MODULE:CLASS")
    if storage is not None and "://" in storage:
        raise UserError(
            f"--storage {storage}: the bench analyses its studies, which reads local or NFS "
            "folders only; give a path"
        )
    out = []
    for scenario in scenarios:
        spec = load_spec(
            preset_path(SCENARIO_PREFIX + scenario),
            storage=storage,
            name=bench_name(scenario, strategies),
            add_strategies=strategies,
        )
        out.append(BenchStudy(scenario, spec, existing_action(spec)))
    return out


def existing_action(spec: StudySpec) -> Action:
    """launch / resume / skip for the study ``spec`` names; :class:`UserError` when a study of
    that name was launched from a different spec (it is never overwritten)."""
    from study.store.state import open_study

    root = f"{spec.storage.rstrip('/')}/{spec.name}"
    if not StudyFolder(root).exists("study.json"):
        return "launch"
    _, saved, state = open_study(root)
    # storage and name locate the folder (open_study gives the absolute path): not the spec
    where = {"storage", "name"}
    if saved.model_dump(mode="json", exclude=where) != spec.model_dump(mode="json", exclude=where):
        raise UserError(
            f"study {spec.name!r} at {root} was launched from a different spec than this "
            "bench's; move it away or give another --storage (nothing was run)"
        )
    done = all(v == "done" for v in state["phases"].values())
    return "skip" if done else "resume"


def plan_text(studies: list[BenchStudy], added: list[str]) -> str:
    """The bench's plan: per scenario, the study, what will happen to it, its strategies, the
    added strategies' ladder and the evaluation seeds, and the trials planned."""
    lines = [f"bench of {', '.join(added)} through {len(studies)} scenario(s), one after another:"]
    total = 0
    for b in studies:
        spec = b.spec
        trials = sum(search_plan(spec).values()) + sum(eval_counts(spec).values())
        total += trials
        ladder = rungs(spec)[added[0]]
        seeds = spec.budget.eval_seed_values()
        lines += [
            f"  {b.scenario}: {b.action} {b.root}",
            f"    strategies: {', '.join(spec.strategies)}",
            f"    ladder {', '.join(map(str, ladder))} search trials per strategy (search seed "
            f"{spec.budget.search_seed}), evaluated on seeds {', '.join(map(str, seeds))}; "
            f"{trials} trials planned",
        ]
    lines.append(
        f"{total} trials in all (an upper bound: a rung whose best is unchanged reuses "
        "its evaluation)"
    )
    return "\n".join(lines)


def run_bench(
    studies: list[BenchStudy], out: Path, address: str | None = None, reps: int = 2000
) -> Path:
    """Launch, resume or skip each study in turn, then analyse them all into ``out``; returns
    the report's path."""
    from analysis.cli import analyse
    from study import commands

    for b in studies:
        print(f"bench: {b.scenario}: {b.action} {b.root}", flush=True)
        if b.action == "launch":
            commands.launch(b.spec, address=address)
        elif b.action == "resume":
            commands.resume(b.root, address=address)
        if b.action != "skip":
            commands.finish(b.root, analysis=False)
    _, report = analyse([b.root for b in studies], out, reps=reps)
    return report


def tables_text(out: Path, report: Path) -> str:
    """Where the bench's tables are (a table the analysis did not write, e.g. the aggregate of
    a single scenario, is said to be missing: the report says why)."""
    tables = [
        ("per-scenario directions", "scenario_directions.md"),
        ("per-scenario means", "scenario_means.md"),
        ("aggregate across scenarios (IQM, probability of improvement)", "aggregate.md"),
    ]
    lines = [
        f"{what}: {out / name}" if (out / name).is_file() else f"{what}: not written (see report)"
        for what, name in tables
    ]
    return "\n".join([*lines, f"report: {report}"])

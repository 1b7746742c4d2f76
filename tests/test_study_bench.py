"""``plasticity study bench --with STRATEGY``: the plan of a user's method through the scenario
suite, the one-line errors that leave the storage untouched, and the orchestration (launch,
resume or skip each scenario's study, then one analysis of all) with the launching functions
replaced by recorders: the presets are far too big to run in a test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from plasticity import strategies
from plasticity.cli import main
from study import bench
from study.spec import load_spec, preset_path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "reinit_last_layers:ReinitLastLayers"
"""The worked example's class, imported from its source as a user's MODULE:CLASS (every
built-in strategy is in the scenario presets already)."""
ADDED = "reinit_last_layers-ReinitLastLayers"
"""REFERENCE in a study name."""


@pytest.fixture
def user_strategy(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "reinit-last-layers" / "src"))
    monkeypatch.setattr(strategies, "_PLUGINS", {})
    yield REFERENCE
    for name in [m for m in sys.modules if m.split(".")[0] == "reinit_last_layers"]:
        del sys.modules[name]


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def test_the_plan_adds_the_strategy_to_every_scenario_on_its_ladder_and_seeds(
    user_strategy, tmp_path, capsys
):
    """Per scenario: the preset's strategies and then the new one; the preset's budget
    (ladder, search and evaluation seeds), setting and expectations unchanged."""
    storage = tmp_path / "studies"
    studies = bench.bench_studies([REFERENCE], bench.scenario_names(), str(storage))
    assert [b.scenario for b in studies] == bench.scenario_names()
    assert "class-shuffle" in bench.scenario_names()
    for b in studies:
        base = load_spec(preset_path(f"scenario-{b.scenario}"))
        assert list(b.spec.strategies) == [*base.strategies, REFERENCE]
        assert (b.spec.budget, b.spec.setting, b.spec.scenario) == (
            base.budget,
            base.setting,
            base.scenario,
        )
        assert b.action == "launch"
        assert b.spec.name == f"bench-{b.scenario}-with-reinit_last_layers-ReinitLastLayers"

    argv = ["study", "bench", "--with", REFERENCE, "--storage", str(storage), "--dry-run"]
    assert main([*argv, "--scenarios", "class-shuffle,scenario-full-shuffle"]) == 0
    out = capsys.readouterr().out
    assert "class-shuffle: launch" in out and "full-shuffle: launch" in out
    assert "permuted-mnist" not in out
    assert "ladder 4, 8, 16" in out and "seeds 1000, 1001, 1002, 1003, 1004" in out
    assert "valid; nothing written" in out.splitlines()[-1]
    assert not storage.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--with", "reset", "--scenarios", "nope"], "unknown scenario 'nope'; choose from all,"),
        (["--with", "no_such_module:Thing"], "strategy 'no_such_module:Thing': no module named"),
        (["--with", "reset"], "--with reset: the study compares it already"),
        (
            ["--with", "reset_head:ResetHead", "--storage", "s3://b/s"],
            "reads local or NFS folders only",
        ),
    ],
)
def test_a_user_error_is_one_line_and_writes_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["study", "bench", *args, "--out", str(out)]
    if "--storage" not in args:
        argv += ["--storage", str(tmp_path / "studies")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert _files(tmp_path) == []


def _existing(storage: Path, scenario: str, phases: str, **budget) -> None:
    """A study of the bench's name in ``storage``, as a launch leaves it, its phases set to
    ``phases`` (``budget`` changes the preset: a study of a different spec)."""
    from study.store.folder import StudyFolder
    from study.store.state import new_state, write_new

    (b,) = bench.bench_studies([REFERENCE], [scenario], str(storage))
    spec = b.spec.model_copy(update={"budget": b.spec.budget.model_copy(update=budget)})
    state = new_state(spec)
    state["phases"] = {p: phases for p in state["phases"]}
    write_new(StudyFolder(b.root), spec, state)


def test_a_study_of_the_same_name_and_a_different_spec_is_refused(user_strategy, tmp_path, capsys):
    storage = tmp_path / "studies"
    _existing(storage, "full-shuffle", "pending", eval_seeds=2)
    before = {p: p.read_bytes() for p in _files(storage) if p.is_file()}
    argv = ["study", "bench", "--with", REFERENCE, "--storage", str(storage)]
    assert main([*argv, "--scenarios", "class-shuffle,full-shuffle"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"bench-full-shuffle-with-{ADDED}" in err and "a different spec" in err
    assert "\n" not in err
    assert {p: p.read_bytes() for p in _files(storage) if p.is_file()} == before


def test_the_bench_launches_resumes_skips_then_analyses_them_all(
    user_strategy, tmp_path, capsys, monkeypatch
):
    """No study: launched; an unfinished one: resumed; a finished one: skipped; each run one
    is finished without its own analysis, then one analysis reads all three into --out."""
    import analysis.cli
    from study import commands

    storage, out = tmp_path / "studies", tmp_path / "bench"
    _existing(storage, "full-shuffle", "running")
    _existing(storage, "permuted-mnist", "done")
    calls: list[tuple[str, ...]] = []

    def launch(spec, address=None):
        calls.append(("launch", spec.name))
        return f"{storage}/{spec.name}"

    def analyse(paths, out_dir, reps=2000):
        calls.append(("analyse", *(Path(p).name for p in paths), str(out_dir)))
        out_dir.mkdir()
        for table in ("scenario_directions.md", "aggregate.md"):
            (out_dir / table).write_text("|")
        return None, out_dir / "report.md"

    monkeypatch.setattr(commands, "launch", launch)
    monkeypatch.setattr(
        commands, "resume", lambda root, address=None: calls.append(("resume", root))
    )
    monkeypatch.setattr(
        commands, "finish", lambda root, analysis=True: calls.append(("finish", root, analysis))
    )
    monkeypatch.setattr(analysis.cli, "analyse", analyse)
    scenarios = "class-shuffle,full-shuffle,permuted-mnist"
    argv = ["study", "bench", "--with", REFERENCE, "--storage", str(storage), "--out", str(out)]
    assert main([*argv, "--scenarios", scenarios]) == 0
    names = [f"bench-{s}-with-{ADDED}" for s in scenarios.split(",")]
    roots = [f"{storage}/{n}" for n in names]
    assert calls == [
        ("launch", names[0]),
        ("finish", roots[0], False),
        ("resume", roots[1]),
        ("finish", roots[1], False),
        ("analyse", *names, str(out)),
    ]
    text = capsys.readouterr().out
    assert "permuted-mnist: skip" in text
    assert f"(IQM, probability of improvement): {out}/aggregate.md" in text
    assert f"per-scenario directions: {out}/scenario_directions.md" in text
    assert "per-scenario means: not written (see report)" in text


def test_an_existing_study_under_a_relative_storage_is_the_same_spec(
    user_strategy, tmp_path, monkeypatch
):
    """study.json's folder is read back as an absolute path; the bench's spec keeps the
    storage as given: the same study, resumed, not "a different spec"."""
    monkeypatch.chdir(tmp_path)
    _existing(Path("studies"), "full-shuffle", "running")
    _existing(Path("studies"), "class-shuffle", "done")
    studies = bench.bench_studies([REFERENCE], ["full-shuffle", "class-shuffle"], "studies/")
    assert [b.action for b in studies] == ["resume", "skip"]


def test_the_readme_shows_the_one_command_and_it_parses():
    """The README's bench commands are the command line's: every flag they use exists."""
    from plasticity.cli import build_parser

    lines = [
        line.split("#")[0].split()
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("plasticity study bench ")
    ]
    assert len(lines) >= 2
    for words in lines:
        args = build_parser("study").parse_args(words[1:])
        assert args.func.__name__ == "cmd_bench" and args.with_strategies

"""Strategies from outside this package: the worked example (examples/reinit-last-layers)
installed apart from it, through `plasticity strategies`, `check-strategy`, `run` and a tiny
study; and every way a plugin can be unusable, each one line and a non-zero exit, nothing
written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TINY_RUN_ARGS

from plasticity import strategies
from plasticity.cli import main
from plasticity.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "reinit-last-layers"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example pip-installed into a folder of its own (a copy of its source, so the build
    leaves nothing in the checkout; no index, no build isolation, no dependencies: offline and
    about a second). The folder holds the package and its dist-info, entry point included."""
    work = tmp_path_factory.mktemp("example")
    source = work / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site-packages"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--target", str(target), str(source)],
        check=True,
        capture_output=True,
    )
    return target


def _forget(prefix: str) -> None:
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]


@pytest.fixture
def plugin(installed, monkeypatch):
    """The installed example on this process's path and on PYTHONPATH (for the processes it
    starts: Ray's workers), as a package installed in the environment would be; forgotten
    after the test."""
    monkeypatch.syspath_prepend(str(installed))
    path = [str(installed), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    monkeypatch.setattr(strategies, "_PLUGINS", {})
    yield installed
    _forget("reinit_last_layers")


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    return captured.err


# -- the worked example ------------------------------------------------------------------------
def test_the_installed_example_is_listed_by_name(plugin, capsys):
    assert main(["strategies"]) == 0
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("reinit_last "))
    assert "entry point reinit_last_layers:ReinitLastLayers of reinit-last-layers 0.1.0" in row
    assert row.endswith("layers=2")
    assert strategies.get("reinit_last").__module__ == "reinit_last_layers"
    assert "reinit_last" in strategies.names()


def test_the_example_passes_the_kit(plugin, capsys):
    assert main(["check-strategy", "reinit_last"]) == 0
    out = capsys.readouterr().out.splitlines()
    rules = [x.split()[:2] for x in out[1:-1]]
    assert rules == [["pass", r] for r in ("optimizer", "model", "determinism", "resume")] + [
        ["pass", "activation"]
    ]
    assert out[-1].startswith("reinit_last conforms: 5 of 5 rules pass")


def test_the_broken_example_fails_the_optimizer_rule_by_name(plugin, capsys):
    """The example's broken twin replaces the last layers and never tells the optimizer: the
    kit names the rule and what it saw (the new layers' 4 tensors left out), exit 1."""
    assert main(["check-strategy", "reinit_last_layers.broken:ForgetsTheOptimizer"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    optimizer = next(x for x in captured.out.splitlines() if "optimizer " in x)
    assert optimizer.split()[:2] == ["FAIL", "optimizer"]
    assert "after task 1 epoch 0 (after the task boundary)" in optimizer
    assert "4 tensor(s) (68,362 parameters) trainable but not in the optimizer" in optimizer
    assert "breaks 2 rule(s)" in captured.out.splitlines()[-1]


def test_run_takes_the_example_by_name_and_by_reference(plugin, tmp_path):
    out = tmp_path / "run"
    reference = "reinit_last_layers:ReinitLastLayers"
    argv = ["run", *TINY_RUN_ARGS, "--strategies", f"reset,reinit_last,{reference}"]
    argv += ["--param", "reinit_last.layers=1", "--param", f"{reference}.layers=3"]
    assert main([*argv, "--out", str(out)]) == 0
    records = pd.read_parquet(out / "records.parquet")
    assert list(dict.fromkeys(records.strategy)) == ["reset", "reinit_last", reference]
    params = json.loads((out / "config.json").read_text())["config"]["strategy_params"]
    assert params == {"reset": {}, "reinit_last": {"layers": 1}, reference: {"layers": 3}}
    # task 0 is the same network for all; after the boundary they part
    first = records[records.task == 0].groupby("strategy").test_acc.apply(list)
    assert first["reset"] == first["reinit_last"] == first[reference]
    last = records[records.task == 1].groupby("strategy").test_acc.apply(list)
    assert last["reinit_last"] != last[reference]


def test_a_study_file_takes_the_example_and_its_search_space(plugin, tmp_path):
    from study.commands import strategies_text
    from study.spec import load_spec

    spec = load_spec(_study(tmp_path, {"reinit_last": "default"}))
    assert spec.strategies["reinit_last"]["layers"] == [1, 2, 3]  # its Params.SEARCH
    text = strategies_text(spec, None)
    assert text.startswith("reset (built-in); reinit_last (entry point ")
    assert "reinit_last imported on this driver before any trial" in text
    assert "install the package on every node" in strategies_text(spec, "auto")
    reference = "reinit_last_layers:ReinitLastLayers"
    spec = load_spec(_study(tmp_path, {reference: {"layers": [1, 3]}}))
    assert spec.strategies[reference] == {"layers": [1, 3]}
    with pytest.raises(UserError, match="layers = 'two': .*layers must be int, got 'two'"):
        load_spec(_study(tmp_path, {"reinit_last": {"lr": [1e-3], "layers": [1, "two"]}}))


def test_a_scenario_takes_the_example_beside_its_strategies(plugin):
    """``study launch --preset scenario-... --with reinit_last``: the new method joins the
    shipped strategies on the scenario's budget ladder, seeds and expectations."""
    from plasticity.cli import build_parser
    from study.cli import load_from_args
    from study.spec import load_spec, preset_path

    reference = "reinit_last_layers:ReinitLastLayers"
    argv = ["study", "validate", "--preset", "scenario-class-shuffle", "--name", "s"]
    args = build_parser("study").parse_args([*argv, "--with", "reinit_last", "--with", reference])
    spec = load_from_args(args)
    base = load_spec(preset_path("scenario-class-shuffle"))
    assert list(spec.strategies) == [*base.strategies, "reinit_last", reference]
    assert spec.strategies["reinit_last"]["layers"] == [1, 2, 3]
    assert (spec.budget, spec.setting, spec.scenario) == (base.budget, base.setting, base.scenario)
    with pytest.raises(UserError, match="--with reset: the study compares it already"):
        load_from_args(build_parser("study").parse_args([*argv, "--with", "reset"]))


@pytest.mark.ray
def test_a_tiny_study_of_the_example_under_ray(plugin, tmp_path, capsys):
    """The example by name, searched and evaluated beside reset by Ray's workers, which import
    it as the driver did (a local Ray: the same machine, the same PYTHONPATH)."""
    ray = pytest.importorskip("ray")
    from study.commands import launch
    from study.spec import load_spec

    reference = "reinit_last_layers:ReinitLastLayers"
    study = _study(
        tmp_path,
        {
            "reinit_last": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "layers": [1, 2]},
            reference: {"lr": [1e-3], "layers": [1, 3]},
        },
        budget={"trials_per_strategy": 1, "eval_seeds": 1},
    )
    spec = load_spec(study)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        root = Path(launch(spec))
    finally:
        ray.shutdown()
    state = json.loads((root / "study.json").read_text())
    assert set(state["phases"].values()) == {"done"}
    assert {r["strategy"] for r in state["eval"]} == {"reset", "reinit_last", reference}
    done: dict[str, list[str]] = {}
    for result in (root / "trials").glob("*/result.json"):
        last = json.loads(result.read_text().splitlines()[-1])
        if last["run_complete"]:
            done.setdefault(last["strategy"], []).append(last["config"]["phase"])
    # each strategy's search trial and evaluation ran whole (Ray spells ':' as '_' in the
    # trial folder's name; the strategy is read from the results, as the analysis does)
    assert {k: sorted(v) for k, v in done.items()} == {
        s: ["eval", "search"] for s in ("reset", "reinit_last", reference)
    }


def _study(tmp_path: Path, plugins: dict, **extra) -> dict:
    spec = {
        "name": "plug",
        "setting": {"model": "mlp-small", "restarts": 1, "epochs": 2, "batch_size": 1000},
        "strategies": {"reset": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}, **plugins},
        "budget": {"trials_per_strategy": 1, "eval_seeds": 0},
        "resources": {"cpu": 1},
        "concurrency": 1,
        "storage": str(tmp_path / "studies"),
    }
    spec.update(extra)
    return spec


# -- bad plugins: one line, a non-zero exit, nothing written -----------------------------------
@pytest.fixture
def broken_packages(tmp_path, monkeypatch):
    """A folder on the path holding a module that raises as it imports, and the dist-info of a
    package whose entry points fail: one names a module that does not exist, one that module,
    one a function."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "explodes.py").write_text("1 / 0\n\nclass Thing:\n    pass\n")
    (site / "notastrategy.py").write_text("def make():\n    return 1\n")
    info = site / "badplugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: badplugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [plasticity.strategies]
            ghost = no_such_module_anywhere:Thing
            boom = explodes:Thing
            function = notastrategy:make
            reset = notastrategy:make
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(strategies, "_PLUGINS", {})
    yield site
    for module in ("explodes", "notastrategy"):
        _forget(module)


BAD = [
    ("no_such_module_anywhere:Thing", "strategy 'no_such_module_anywhere:Thing': no module named"),
    ("plasticity.strategies.reset:Nope", "module 'plasticity.strategies.reset' has no 'Nope'"),
    ("plasticity.strategies.base:freeze", "is not a plasticity Strategy (a function)"),
    ("plasticity.config:RunConfig", "is not a plasticity Strategy (a class RunConfig)"),
    ("explodes:Thing", "failed to import: ZeroDivisionError: division by zero (/"),
    ("no_colon_or_name", "unknown strategy 'no_colon_or_name'; choose from reset, "),
    (
        "ghost",
        "strategy 'ghost' (entry point 'no_such_module_anywhere:Thing' of badplugins 0.1) "
        "failed to import: ModuleNotFoundError",
    ),  # fmt: skip
    ("boom", "failed to import: ZeroDivisionError: division by zero"),
    ("function", "strategy 'function' (entry point 'notastrategy:make' of badplugins 0.1) is not"),
    ("bad:name:twice", "a reference into your code is MODULE:CLASS"),
]


@pytest.mark.parametrize("name,message", BAD)
def test_a_bad_plugin_is_one_line_and_writes_nothing(
    broken_packages, tmp_path, capsys, name, message
):
    out = tmp_path / "run"
    assert main(["run", *TINY_RUN_ARGS, "--strategies", f"reset,{name}", "--out", str(out)]) == 2
    assert message in _one_line_error(capsys)
    assert not out.exists()
    assert main(["check-strategy", name]) == 2
    assert message in _one_line_error(capsys)
    assert capsys.readouterr().out == ""  # not even the header: nothing ran
    spec = tmp_path / "study.yaml"
    spec.write_text(yaml.safe_dump(_study(tmp_path, {name: "default"})))
    assert main(["study", "validate", str(spec)]) == 2
    assert message in _one_line_error(capsys)
    assert not (tmp_path / "studies").exists()


def test_a_plugin_cannot_take_a_builtin_name(broken_packages):
    assert strategies.get("reset").__module__ == "plasticity.strategies.reset"
    assert strategies.names().count("reset") == 1


def test_the_listing_shows_a_broken_entry_point_and_why(broken_packages, capsys):
    assert main(["strategies"]) == 0
    rows = {x.split()[0]: x for x in capsys.readouterr().out.splitlines()}
    assert "unusable" in rows["ghost"] and "ModuleNotFoundError" in rows["ghost"]
    assert (
        "ZeroDivisionError" in rows["boom"] and "is not a plasticity Strategy" in rows["function"]
    )
    assert "built-in" in rows["reset"]


@pytest.mark.parametrize(
    "item,parts",
    [
        ("expanded.schedule=cosine", ("expanded", "schedule", "cosine")),
        ("mylab.plast:MyStrategy.rate=0.1", ("mylab.plast:MyStrategy", "rate", "0.1")),
        ("mylab.plast:MyStrategy=0.1", None),
        ("rate=0.1", None),
        ("expanded.schedule", None),
    ],
)
def test_param_takes_the_key_after_the_last_dot(item, parts):
    from plasticity.cli import parse_param

    if parts is None:
        with pytest.raises(UserError, match="--param wants STRATEGY.KEY=VALUE"):
            parse_param(item)
    else:
        assert parse_param(item) == parts


def test_a_plugin_parameter_of_the_wrong_type_is_one_line(plugin, tmp_path, capsys):
    out = tmp_path / "run"
    for bad, message in (
        ("reinit_last.layers=two", "reinit_last.layers must be int, got 'two'"),
        ("reinit_last.layers=0", "reinit_last.layers must be >= 1, got 0"),
        ("reinit_last.depth=2", "unknown parameter 'depth' for strategy 'reinit_last'"),
    ):
        argv = ["run", *TINY_RUN_ARGS, "--strategies", "reinit_last", "--param", bad]
        assert main([*argv, "--out", str(out)]) == 2
        assert message in _one_line_error(capsys)
        assert not out.exists()
    assert main(["check-strategy", "reinit_last", "--param", "layers=1.5"]) == 2
    assert "reinit_last.layers must be int, got '1.5'" in _one_line_error(capsys)

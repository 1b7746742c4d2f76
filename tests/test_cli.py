"""The `plasticity` command: tiny-budget smoke runs and one-line errors."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import TINY_RUN_ARGS

from plasticity.cli import main

TINY = TINY_RUN_ARGS


def test_run_writes_config_and_one_record_per_strategy_task_epoch(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                *TINY,
                "--schedule",
                "cosine",
                "--alpha0",
                "0.1",
                "--ramp",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    records = pd.read_parquet(out / "records.parquet")
    assert len(records) == 3 * 2 * 2
    assert set(records.strategy) == {"reset", "continuous", "expanded"}
    meta = json.loads((out / "config.json").read_text())
    assert meta["kind"] == "plasticity-run"
    assert meta["config"]["strategy_params"]["expanded"] == {
        "schedule": "cosine",
        "alpha0": 0.1,
        "ramp": 1.0,
        "per_step": False,
    }
    assert meta["config"]["lr"] == 1e-3  # the paper's lr for an MLP on MNIST
    exp = records[records.strategy == "expanded"]
    assert exp.alpha.tolist() == pytest.approx([1, 1, 0.1, 1])
    assert "auc_test_acc" in capsys.readouterr().out


def test_run_refuses_existing_results_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--strategies", "reset", "--out", str(out)]) == 0
    before = (out / "records.parquet").read_bytes()
    capsys.readouterr()
    assert main(["run", *TINY, "--strategies", "reset", "--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds results" in err and "--overwrite" in err
    assert (out / "records.parquet").read_bytes() == before
    assert (
        main(
            ["run", *TINY, "--strategies", "reset", "--seed", "1", "--out", str(out), "--overwrite"]
        )
        == 0
    )
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "svhn"], "unknown dataset 'svhn'"),
        (["--model", "resnet"], "unknown model 'resnet'"),
        (["--task", "rotate"], "unknown objective 'rotate'"),
        (["--strategies", "reset,magic"], "unknown strategy 'magic'"),
        (["--schedule", "exp"], "unknown schedule 'exp'"),
        (["--epochs", "0"], "epochs must be a positive integer, got 0"),
        (["--epochs", "2.5"], "--epochs: not an integer: '2.5'"),
        (["--restarts", "-1"], "restarts must be an integer >= 0, got -1"),
        (["--batch-size", "0"], "batch-size must be a positive integer"),
        (
            ["--optimizer", "rmsprop"],
            "unknown optimizer 'rmsprop'; choose from adam, adamw, sgd, trac, kron",
        ),
        (["--beta2", "1.0"], r"beta2 must be in \[0, 1\), got 1.0"),
        (["--betas", "0.9"], "--betas wants B1,B2, got 1 value"),
        (["--betas", "0.9,x"], "--betas: not a number: 'x'"),
        (["--eps", "0"], "eps must be > 0"),
        (["--weight-decay=-1e-3"], "weight-decay must be >= 0"),
        (["--momentum", "1"], r"momentum must be in \[0, 1\)"),
        (["--lr", "nan"], "--lr: not a finite number"),
        (["--lr", "0"], "lr must be > 0"),
        (["--lr=-1e-3"], "lr must be > 0"),
        (["--alpha0", "1.0"], r"alpha0 must be in \[0, 1\)"),
        (["--alpha0", "-0.1"], r"alpha0 must be in \[0, 1\)"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--param", "expanded.speed=3"], "unknown parameter 'speed'"),
        (["--param", "garbage"], "--param wants STRATEGY.KEY=VALUE"),
        (["--dataset", "mnist", "--data-dir", "MISSING"], "pass --download"),
        (["--device", "tpu"], "device"),
        (["--device", "cuda:7"], "device 'cuda:7'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--hidden", "100,0"], "hidden must be positive integer widths, e.g. 100,100"),
        (["--hidden", "wide"], "hidden must be positive integer widths"),
        (["--norm", "batch"], "unknown norm 'batch'; choose from none, layer"),
    ],
)
def test_bad_input_is_one_line_nonzero_and_writes_nothing(tmp_path, capsys, args, message):
    import re

    out = tmp_path / "out"
    args = [a.replace("MISSING", str(tmp_path / "nodata")) for a in args]
    code = main(["run", *TINY, *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("plasticity: error:"), err
    assert re.search(message, err), err
    assert not out.exists()


def test_models_lists_the_paper_parameter_counts(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for count in ("3,706,762", "132,206,602", "30,094", "447,814"):
        assert count in out


def test_models_lists_the_counts_of_other_widths_with_and_without_norm(capsys):
    assert main(["models", "--hidden", "100,100"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mlp  "))
    # 784*100+100 + 100*100+100 + 100*10+10, and + a scale and shift per hidden unit
    assert "89,610" in line and "90,010" in line and "784-100-100-10" in line
    assert main(["models", "--hidden", "0"]) == 2
    assert capsys.readouterr().err.startswith("plasticity: error: hidden must be")


def test_run_takes_width_depth_and_norm_flags(tmp_path):
    out = tmp_path / "run"
    args = ["run", *TINY, "--strategies", "redo", "--hidden", "32,16", "--norm", "layer"]
    assert main([*args, "--restarts", "0", "--epochs", "1", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["hidden"], config["norm"]) == ([32, 16], "layer")
    records = pd.read_parquet(out / "records.parquet")
    # 784*32+32 + 32*16+16 + 16*10+10, + 2 * (32 + 16) for the norm layers
    assert records.params.tolist() == [784 * 32 + 32 + 32 * 16 + 16 + 170 + 96]


def test_presets_have_the_paper_settings(capsys):
    from plasticity.cli import build_parser, config_from_args

    assert main(["presets"]) == 0
    assert capsys.readouterr().out.count("paper-") == 8
    args = build_parser().parse_args(["run", "--preset", "paper-cnn-cifar10-full", "--epochs", "3"])
    cfg = config_from_args(args)
    assert (cfg.model, cfg.dataset, cfg.objective, cfg.restarts, cfg.lr, cfg.batch_size) == (
        "cnn",
        "cifar10",
        "full_shuffle",
        15,
        1e-3,
        8192,
    )
    assert cfg.epochs == 3  # flags override the preset


def test_console_script_runs_end_to_end(tmp_path):
    """The installed entry point, as a user types it."""
    out = tmp_path / "r"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "plasticity.cli",
            "run",
            *TINY,
            "--task",
            "permute_inputs",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_parquet(out / "records.parquet")) == 12


def test_science_layer_never_imports_ray():
    code = (
        "import sys, plasticity.cli, plasticity.loop; plasticity.cli.build_parser(); "
        "assert not any(m == 'ray' or m.startswith('ray.') for m in sys.modules), 'ray'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_every_strategy_runs_in_plasticity_run(tmp_path):
    from plasticity.strategies import STRATEGIES

    out = tmp_path / "all"
    assert (
        main(
            ["run", *TINY, "--strategies", ",".join(STRATEGIES), "--diagnostics", "--out", str(out)]
        )
        == 0
    )
    records = pd.read_parquet(out / "records.parquet")
    assert set(records.strategy) == set(STRATEGIES)
    assert records.groupby("strategy").size().eq(4).all()
    for col in ("diag_dormant", "diag_effective_rank", "diag_srank", "diag_grad_norm"):
        assert records[col].notna().all(), col

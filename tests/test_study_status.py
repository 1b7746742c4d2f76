"""plasticity study status / list, on study folders written as a study writes them (no Ray)."""

from __future__ import annotations

import json

import pytest
import yaml

from plasticity.cli import main
from study.spec import load_spec
from study.store.state import LAYOUT

SPEC = {
    "name": "s",
    "setting": {"dataset": "mnist-5k", "model": "mlp-small", "restarts": 1, "epochs": 2},
    "strategies": {
        "reset": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
        "expanded": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "alpha0": [0.0, 0.5]},
    },
    "budget": {"trials_per_strategy": 3, "eval_seeds": 2},
    "metric": "auc_test_acc",
}


def ray_trial(
    strategy, phase, status, objective=None, complete=True, lr=1e-3, alpha0=None, trial_id=""
):
    """One ``trial_data`` entry of a Ray experiment snapshot (the keys status reads)."""
    run = {"strategies": [strategy], "lr": lr, "seed": 0}
    if alpha0 is not None:
        run["strategy_params"] = {"expanded": {"alpha0": alpha0}}
    last = {} if objective is None else {"auc_test_acc": objective, "run_complete": complete}
    trial = {"status": status, "config": {"strategy": strategy, "phase": phase, "run": run}}
    trial["trial_id"] = trial_id
    runtime = {"start_time": 1000.0, "last_result_time": 1060.0, "last_result": last}
    return [json.dumps(trial), json.dumps(runtime)]


def write_study(root, phases, experiments):
    spec = load_spec(SPEC, storage=str(root.parent), name=root.name)
    root.mkdir(parents=True)
    (root / "study.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    state = {
        "kind": "plasticity-study",
        "layout": LAYOUT,
        "version": "0.1.0",
        "name": root.name,
        "created": "2026-11-25T10:00:00+0000",
        "phases": phases,
        "best": {},
    }
    (root / "study.json").write_text(json.dumps(state))
    for name, trials in experiments.items():
        (root / name).mkdir()
        for stamp, data in (("2026-11-25_10-00-00", []), ("2026-11-25_10-05-00", trials)):
            (root / name / f"experiment_state-{stamp}.json").write_text(
                json.dumps({"trial_data": data, "runner_data": {}, "stats": {}})
            )
    return root


def interrupted(tmp_path):
    """Killed during search-expanded: reset's search done, expanded's half done."""
    return write_study(
        tmp_path / "studies" / "killed",
        {
            "search-reset": "done",
            "search-expanded": "running",
            "eval-reset": "pending",
            "eval-expanded": "pending",
        },
        {
            "trials": [
                ray_trial("reset", "search", "TERMINATED", 0.80, lr=0.002),
                ray_trial("reset", "search", "TERMINATED", 0.85, lr=0.004),
                ray_trial("reset", "search", "TERMINATED", 0.40, complete=False),  # ASHA
                ray_trial("expanded", "search", "TERMINATED", 0.70, alpha0=0.5),
                ray_trial("expanded", "search", "RUNNING", 0.20, complete=False),
                ray_trial("expanded", "search", "ERROR"),
            ],
        },
    )


def test_status_of_a_killed_study_counts_each_state_against_the_plan(tmp_path, capsys):
    root = interrupted(tmp_path)
    assert main(["study", "status", str(root)]) == 0
    out = capsys.readouterr().out
    assert "running or interrupted" in out
    assert (
        "search-reset done, search-expanded running, eval-reset pending, eval-expanded pending"
    ) in out
    lines = {line.split()[0]: line for line in out.splitlines()[4:]}
    # the newest snapshot counts (the older, empty one is ignored); a stopped trial is no best
    assert (
        "search 2/3 done, 1 stopped; eval 0/2 done, 2 to do; best 0.8500 (lr=0.004)"
        in (lines["reset"])
    )
    assert (
        "search 1/3 done, 1 running, 1 failed; eval 0/2 done, 2 to do; best 0.7000"
        in (lines["expanded"])
    )
    assert "alpha0=0.5" in lines["expanded"]
    assert "wall time so far" in out


def test_status_of_a_finished_study_and_the_eval_phase(tmp_path, capsys):
    trials = [ray_trial(s, "search", "TERMINATED", 0.5) for s in ("reset", "expanded")]
    evals = [ray_trial(s, "eval", "TERMINATED", 0.6) for s in ("reset", "expanded")] * 2
    root = write_study(
        tmp_path / "studies" / "done",
        {p: "done" for p in ("search-reset", "search-expanded", "eval-reset", "eval-expanded")},
        {"trials": trials + evals},
    )
    main(["study", "status", str(root)])
    out = capsys.readouterr().out
    assert f"study 'done' at {root}: finished" in out
    assert out.count("eval 2/2 done;") == 2


def test_list_gives_one_line_per_study_and_skips_other_folders(tmp_path, capsys):
    interrupted(tmp_path)
    (tmp_path / "studies" / "a-run").mkdir()
    (tmp_path / "studies" / "a-run" / "records.parquet").write_bytes(b"")
    assert main(["study", "list", str(tmp_path / "studies")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [
        "killed: running or interrupted; 1/4 phases, 3/10 trials finished; mlp-small/mnist-5k "
        "class_shuffle, 2 strategies; created 2026-11-25T10:00:00+0000"
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["study", "status", "{tmp}/nowhere"], "is not a study (no study.json)"),
        (["study", "list", "{tmp}/nowhere"], "no such storage"),
    ],
)
def test_status_and_list_errors_are_one_line(tmp_path, capsys, argv, message):
    assert main([a.format(tmp=tmp_path) for a in argv]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_truncated_snapshot_is_named(tmp_path, capsys):
    """Status names a torn newest snapshot and shows the newest whole one (here the older
    session's); with none whole it is one line and a non-zero exit."""
    root = interrupted(tmp_path)
    (root / "trials" / "experiment_state-2026-11-25_10-05-00.json").write_text('{"tri')
    assert main(["study", "status", str(root)]) == 0
    err = capsys.readouterr().err
    assert "experiment_state-2026-11-25_10-05-00.json is unreadable (truncated?): showing" in err
    (root / "trials" / "experiment_state-2026-11-25_10-00-00.json").write_text("")
    assert main(["study", "status", str(root)]) != 0
    err = capsys.readouterr().err.strip()
    assert "experiment_state-2026-11-25_10-05-00.json is unreadable" in err and "\n" not in err


def test_status_and_list_of_an_extended_study_count_its_plan_and_leave_superseded_trials_out(
    tmp_path, capsys
):
    """reset extended by 1 (plan 4) whose new best superseded its 2 first evaluation trials."""
    done = {p: "done" for p in ("search-reset", "search-expanded", "eval-reset", "eval-expanded")}
    trials = [ray_trial("reset", "search", "TERMINATED", 0.5) for _ in range(4)]
    trials += [ray_trial("expanded", "search", "TERMINATED", 0.5) for _ in range(3)]
    trials += [ray_trial("reset", "eval", "TERMINATED", 0.6, trial_id=f"old{k}") for k in (0, 1)]
    trials += [ray_trial(s, "eval", "TERMINATED", 0.6) for s in ("reset", "expanded")] * 2
    root = write_study(tmp_path / "studies" / "ext", done, {"trials": trials})
    state = json.loads((root / "study.json").read_text())
    state.update(plan={"reset": 4}, superseded=["old0", "old1"])
    (root / "study.json").write_text(json.dumps(state))
    main(["study", "status", str(root)])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[4:]}
    assert "search 4/4 done; eval 2/2 done (+2 superseded); best" in lines["reset"]
    assert "search 3/3 done; eval 2/2 done; best" in lines["expanded"]
    main(["study", "list", str(root.parent)])
    assert "11/11 trials finished" in capsys.readouterr().out


@pytest.mark.parametrize(
    "plan",
    [{"reset": 2}, {"redo": 5}, {"reset": "5"}, ["reset"]],
    ids=["below the study file", "unknown strategy", "not a number", "not a mapping"],
)
def test_a_bad_plan_in_study_json_is_one_line(tmp_path, capsys, plan):
    root = interrupted(tmp_path)
    state = json.loads((root / "study.json").read_text())
    (root / "study.json").write_text(json.dumps({**state, "plan": plan}))
    assert main(["study", "status", str(root)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "study.json's plan" in err[0]


def _state(path, *ids, status="TERMINATED"):
    trials = [[json.dumps({"trial_id": i, "status": status}), json.dumps({})] for i in ids]
    path.write_text(json.dumps({"trial_data": trials}))


def test_a_torn_newest_snapshot_reads_as_the_newest_whole_one(tmp_path):
    """A driver killed while Ray writes its snapshot leaves it empty (the fault suite's kill
    as a ladder study ends): readers take the driver's checked copy of it, else the older
    session's; status and the analysis agree; nothing whole at all is still an error."""
    from pyarrow import fs as pafs

    from analysis.load import _known_trials
    from study.store.snapshot import newest_trials

    exp = tmp_path / "trials"
    exp.mkdir()
    _state(exp / "experiment_state-2026-12-04_21-45-01.json", "a")
    newest = exp / "experiment_state-2026-12-04_21-45-50.json"
    newest.write_text("")
    _state(exp / "experiment_state-2026-12-04_21-45-50.json.whole", "a", "b")
    local = pafs.LocalFileSystem()
    assert [t.trial_id for t in newest_trials(local, str(exp))] == ["a", "b"]
    assert _known_trials(exp) == {"a": "TERMINATED", "b": "TERMINATED"}
    (exp / "experiment_state-2026-12-04_21-45-50.json.whole").unlink()
    assert [t.trial_id for t in newest_trials(local, str(exp))] == ["a"]
    assert _known_trials(exp) == {"a": "TERMINATED"}
    (exp / "experiment_state-2026-12-04_21-45-01.json").write_text("{")
    with pytest.raises(ValueError):
        newest_trials(local, str(exp))
    assert _known_trials(exp) is None

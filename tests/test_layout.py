"""The code's layout: imports go one way (import-linter's contracts in pyproject.toml), no
module imports itself through others (no import cycle), and the commands that only read
answer without importing torch or Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("plasticity", "study", "analysis")


def cycles(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    """Every import ``(a, b)``, a importing b, through which a imports itself (b imports a,
    directly or not): empty when the import graph has no cycle. Lazy imports inside functions
    count."""
    ours = sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES)
    return [
        (a, b)
        for a in ours
        for b in sorted(graph.find_modules_directly_imported_by(a))
        if b.split(".")[0] in PACKAGES and graph.chain_exists(importer=b, imported=a)
    ]


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    """The check above can fail: two modules that import each other (one lazily) are found."""
    pkg = tmp_path / "plasticity"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import plasticity.b\n")
    (pkg / "b.py").write_text("def f():\n    import plasticity.a\n")
    (pkg / "c.py").write_text("import plasticity.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "plasticity" or m.startswith("plasticity.")]:
        monkeypatch.delitem(sys.modules, name)
    graph = grimp.build_graph("plasticity", include_external_packages=False, cache_dir=None)
    assert cycles(graph) == [("plasticity.a", "plasticity.b"), ("plasticity.b", "plasticity.a")]


def test_imports_keep_the_layers_of_pyproject():
    """import-linter's contracts: plasticity has no Ray, analysis no torch or Ray, and the
    study layer's parts import only downwards (cli, commands, driver, search, store, ...)."""
    out = subprocess.run(
        [sys.executable, "-c", "import sys, importlinter.cli as c; sys.exit(c.lint_imports())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


HEAVY = ("torch", "ray", "pandas", "optuna")


def imported_by(argv: list[str]) -> list[str]:
    """Which of :data:`HEAVY` the ``plasticity`` command ``argv`` imports (in a new process)."""
    code = (
        "import sys\n"
        "from plasticity.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_commands_that_only_read_import_neither_torch_nor_ray(tmp_path):
    from test_study_status import ray_trial, write_study

    phases = {"search-reset": "running", "search-expanded": "pending"}
    phases.update({"eval-reset": "pending", "eval-expanded": "pending"})
    trials = [ray_trial("reset", "search", "TERMINATED", 0.5)]
    root = write_study(tmp_path / "studies" / "s", phases, {"trials": trials})
    for argv in (
        ["--help"],
        ["study", "--help"],
        ["study", "status", str(root)],
        ["study", "list", str(tmp_path / "studies")],
        ["study", "presets"],
    ):
        assert imported_by(argv) == [], argv
    assert imported_by(["run", "--help"]) == ["torch"]  # the run flags come from the strategies

"""No import loops: every module of the package imports in a fresh interpreter, and the import graph is acyclic.

An import inside a function is noticed only by a run that reaches it, so the static graph below counts imports
inside functions too, over every module of the package (experiments are found through `experiment.fn`, so no
module imports another only to register it).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "llm_efficiency_bench"


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(BENCH.rglob("*.py")):
        parts = p.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """The package modules a file imports anywhere (module level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in mods}
    return found


@pytest.mark.e2e
def test_every_bench_module_imports_in_a_fresh_interpreter():
    """One fresh interpreter: the released path first (it must load without the miniature's experiments),
    then every other module."""
    names = sorted(_modules())
    code = ("import importlib, sys\nimport llm_efficiency_bench.adaptive_step.released\n"
            "print('experiments loaded:', 'llm_efficiency_bench.adaptive_step.experiments' in sys.modules)\n"
            "for m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok')")
    proc = subprocess.run([sys.executable, "-c", code, *names], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
    assert "experiments loaded: False" in proc.stdout


def test_bench_import_graph_has_no_cycle():
    mods = _modules()
    graph = {m: {d for d in _imports(p, mods) if d != m and not m.startswith(d + ".")} for m, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import loop: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_released_side_and_experiments_do_not_import_each_other():
    """The released-PRM modules and the Best-of-N sweep import nothing of the miniature's experiments (and the
    reverse)."""
    mods = _modules()
    released_side = {"llm_efficiency_bench.adaptive_step.released", "llm_efficiency_bench.adaptive_step.released_prm",
                     "llm_efficiency_bench.adaptive_step.candidates", "llm_efficiency_bench.adaptive_step.bon"}
    for m in released_side:  # (and at run time: see the fresh-interpreter test above)
        assert "llm_efficiency_bench.adaptive_step.experiments" not in _imports(mods[m], mods), m
    tree = ast.parse(mods["llm_efficiency_bench.adaptive_step.experiments"].read_text())
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "llm_efficiency_bench.adaptive_step"
            and any(a.name in {"released", "released_prm", "candidates"} for a in n.names)]
    assert not uses


def test_stages_import_nothing_of_the_experiments_side():
    """The stages (and what they build on) import neither the experiments nor what sits beside them: the chain
    of stages (`pipeline`), the recipe selection on validation questions, the oracle diagnosis."""
    mods = _modules()
    pkg = "llm_efficiency_bench.adaptive_step"
    stages = {f"{pkg}.{m}" for m in ("policy", "samples", "labels", "prm", "tvd", "stage", "stage_inputs",
                                      "stage_settings", "generation", "steps")}
    experiments_side = {f"{pkg}.{m}" for m in ("experiments", "pipeline", "recipe_selection", "oracle")}
    for m in stages:
        assert not _imports(mods[m], mods) & experiments_side, m

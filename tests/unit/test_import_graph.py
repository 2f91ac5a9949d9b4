"""The package's import graph: no cycles, no upward imports (docs/architecture.md).

Every module of ``affalign`` has a layer; a module may import its own layer or a lower one, never
a higher one, and the graph (function-local imports included) has no cycle. A new module must be
given a layer here, which is where the next engineer decides where it belongs. Imports under
``if TYPE_CHECKING:`` are annotations only and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "affalign"

# lowest first: a tweet's walk from reader to alignment row goes job → passes → runtime →
# stages → scorers/backends → storage/schema
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("affalign", "errors", "registry", "schema", "metrics", "progress", "devices", "taxonomy", "ideology", "stats", "reduce")),
    ("storage", ("rundir", "inputs")),
    ("models", ("backends", "scorers", "generation", "tagging")),
    ("config", ("config",)),
    ("stages", ("stages",)),
    ("runtime", ("runtime",)),
    ("passes", ("passes", "report")),
    ("job", ("job",)),
    ("tools", ("cli", "synth", "compare", "fidelity", "calibration", "tagging_quality", "tagging_explain", "summary", "data")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The layer of ``affalign.x.y``: the entry naming its longest prefix."""
    rel = module.split(".")[1:]
    best, best_len = None, -1
    for rank, (_, names) in enumerate(LAYERS):
        for name in names:
            parts = [] if name == "affalign" else name.split(".")
            if rel[: len(parts)] == parts and len(parts) > best_len and (parts or not rel):
                best, best_len = rank, len(parts)
    if best is None:
        raise AssertionError(f"module {module} has no layer in tests/unit/test_import_graph.py: give it one")
    return best


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_lines(tree)
        deps: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "affalign":
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.split(".")[0] == "affalign")
        graph[name] = {d for d in deps if d != name and d in modules}
    return graph


def test_every_module_has_a_layer_and_imports_only_downward():
    graph = import_graph()
    upward = []
    for module, deps in sorted(graph.items()):
        for dep in sorted(deps):
            # a package's __init__ may name its own submodules
            if dep.startswith(module + ".") or module.startswith(dep + ".") and dep == "affalign":
                continue
            if layer_of(dep) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_function_local_and_upward_imports(tmp_path, monkeypatch):
    """The checks can fail: a function-local upward import and a two-module cycle are reported."""
    pkg = tmp_path / "affalign"
    (pkg / "stages").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "stages" / "__init__.py").write_text("")
    (pkg / "job.py").write_text("from affalign.stages import a\n")
    (pkg / "stages" / "a.py").write_text("def f():\n    from affalign.job import run\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", pkg)
    graph = import_graph()
    assert graph["affalign.stages.a"] == {"affalign.job"} and graph["affalign.job"] == {"affalign.stages.a"}
    try:
        test_every_module_has_a_layer_and_imports_only_downward()
    except AssertionError as exc:
        assert "affalign.stages.a (stages) imports affalign.job (job)" in str(exc)
    else:
        raise AssertionError("the upward import was not reported")
    try:
        test_no_import_cycles()
    except AssertionError as exc:
        assert "affalign.job -> affalign.stages.a -> affalign.job" in str(exc)
    else:
        raise AssertionError("the cycle was not reported")

"""The package's import graph has no circles, function-level (lazy) imports included."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path


def _modules() -> dict[str, Path]:
    """Module name -> source file, for choicebc and its mapped subpackages wherever they live."""
    found: dict[str, Path] = {}
    for package in ("choicebc", "choicebc.envs"):
        spec = importlib.util.find_spec(package)
        for root in spec.submodule_search_locations:
            root = Path(root)
            for path in sorted(root.rglob("*.py")):
                rel = path.relative_to(root).with_suffix("")
                parts = [p for p in rel.parts if p != "__init__"]
                if package == "choicebc" and parts[:1] in (["envs"], ["demos"]):
                    continue  # the mapped subpackages are walked from their own location
                found[".".join([package, *parts])] = path
    return found


def _runtime_imports(tree: ast.AST) -> list[ast.AST]:
    """Import statements and ``importlib.import_module("literal")`` calls, anywhere but under
    ``if TYPE_CHECKING:`` (those never run)."""
    found: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        if (
            isinstance(node, ast.Call)
            and ast.unparse(node.func).endswith("import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name if is_package else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
            else:
                targets = [node.args[0].value]
            for target in targets:
                resolved = resolve(target)
                if resolved is not None and resolved != name:
                    graph[name].add(resolved)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return circles


def test_the_walk_sees_lazy_imports():
    modules = _modules()
    graph = _graph(modules)
    assert "choicebc.envs.locomotion" in modules  # the tasks, wherever they are installed
    assert "choicebc.flags" in graph["choicebc.train_cli"]  # a top-level import
    # a function-level one: `choicebc expert eval` loads the card measurement only when it runs
    assert "choicebc.experts.measure" in graph["choicebc.experts.cli"]


def test_no_import_circles():
    graph = _graph(_modules())
    circles = _circles(graph)
    described = [
        " <-> ".join(c) + ": " + "; ".join(f"{a} -> {sorted(graph[a] & set(c))}" for a in c)
        for c in circles
    ]
    assert not circles, "import circles:\n" + "\n".join(described)


def test_a_circle_is_found():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

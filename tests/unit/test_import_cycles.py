"""No import cycles among engine's modules, nor among its packages.

Imports are read from the source (ast), wherever they are: at the top, or deferred into a
function (a deferred import is still a dependency, only a later one). Imports under
`if TYPE_CHECKING:` are left out: they never run.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The engine modules `path` imports. `from package import submodule` counts as the
    submodule alone: every submodule runs its package's __init__ first anyway, so counting
    it would make a cycle of every __init__ that names its own submodules."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            submodules = {f"{base}.{a.name}" for a in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):  # a name defined in the module itself
                found.add(base)
        stack.extend(ast.iter_child_nodes(node))
    return {name for name in found if name in modules}


def dependency_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ENGINE.rglob("*.py")}
    modules = set(paths)
    return {name: imports_of(path, modules) - {name} for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_of(module: str) -> str:
    """engine.spec.model -> engine.spec; engine.cli -> engine.cli (a top-level module)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_module_imports_itself_back() -> None:
    graph = dependency_graph()
    # a package's __init__ re-exporting its modules is not a cycle with them
    assert cycles(graph) == []


def test_no_two_packages_import_each_other() -> None:
    graph: dict[str, set[str]] = {}
    for module, imported in dependency_graph().items():
        graph.setdefault(package_of(module), set()).update(
            package_of(other) for other in imported if package_of(other) != package_of(module)
        )
    assert cycles(graph) == []


def test_the_checker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graphlib.TopologicalSorter({"a": {"b"}}).static_order()  # and none where there is none
    assert cycles({"a": {"b"}, "b": set()}) == []

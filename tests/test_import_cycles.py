"""The package's modules import each other without a cycle.

A cycle makes a module's names exist only after another module finished importing, so the import
order decides whether ``from a import b`` works; it also hides which module holds an idea. The
graph is built statically (``ast``) from module-level imports: ``import x``, ``from x import y``,
``from . import y`` (``y`` counts as a module when it is one), including imports under ``if`` and
``try`` at module level. Imports inside a function or a method run only when it is called (lazy
imports); they are allowed and left out of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tinysaver_det

PACKAGE_ROOT = Path(tinysaver_det.__file__).resolve().parent
PACKAGE = "tinysaver_det"

#: The modules that hold the routers and their files: they import one another in one direction only,
#: even counting lazy imports (a lazy import was how the list of router file kinds used to be completed).
ROUTING_MODULES = (
    "tinysaver_det.core.score_routers",
    "tinysaver_det.detection.output_features",
    "tinysaver_det.detection.saver_features",
    "tinysaver_det.detection.logistic_router",
    "tinysaver_det.detection.feature_router",
    "tinysaver_det.detection.router_files",
)


def package_modules(root: Path = PACKAGE_ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package (a package is its ``__init__``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join([package, *parts])] = path
    return modules


def module_level_nodes(tree: ast.Module, lazy: bool = False):
    """The statements that run when the module is imported: the body, and inside if/try/with at that level
    (with ``lazy``, every statement, imports inside functions included)."""
    if lazy:
        yield from ast.walk(tree)
        return
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, block, []):
                    pending.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])


def imported_modules(name: str, path: Path, modules: dict[str, Path], lazy: bool = False) -> set[str]:
    """The package's modules that ``name`` imports when it is imported (module level only, unless ``lazy``)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in module_level_nodes(ast.parse(path.read_text(), str(path)), lazy):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` imports a.b.c; an attribute import names its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(modules: dict[str, Path], lazy: bool = False) -> dict[str, set[str]]:
    return {name: imported_modules(name, path, modules, lazy) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_cycle_finder_finds_a_cycle_through_a_relative_import(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("import pkg.c\n")
    (tmp_path / "c.py").write_text("from pkg.a import something\n")
    (tmp_path / "d.py").write_text("def lazy():\n    from pkg import a\n")
    graph = import_graph(package_modules(tmp_path, "pkg"))
    assert graph["pkg.d"] == set()  # an import inside a function is lazy
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_the_package_has_no_import_cycle():
    graph = import_graph(package_modules())
    assert graph["tinysaver_det.core.cascade_model"], "the graph must see the package's own imports"
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_routing_modules_import_in_one_direction_even_lazily():
    graph = import_graph(package_modules(), lazy=True)
    routing = {name: graph[name] & set(ROUTING_MODULES) for name in ROUTING_MODULES}
    assert routing["tinysaver_det.detection.router_files"] >= {
        "tinysaver_det.detection.logistic_router", "tinysaver_det.detection.feature_router"}
    found = cycles(routing)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)

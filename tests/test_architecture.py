"""The import structure of orchestration/: no cycles, and models depend on nothing above them.

Every import counts, at module level or inside a function, except those under ``if TYPE_CHECKING:``
(they never run). A package's ``__init__`` is the module named after the package.
"""

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = "orchestration"
ABOVE_MODELS = ("orchestration.services", "orchestration.daemon", "orchestration.web", "orchestration.admin")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module ``tree`` imports (absolute names), skipping ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            # ``from pkg import mod`` imports the submodule pkg.mod when there is one.
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """``{module: the orchestration modules it imports}`` for every module under orchestration/."""
    paths = [
        path for path in sorted((ROOT / PACKAGE).rglob("*.py")) if "migrations" not in path.relative_to(ROOT).parts
    ]
    modules = {_module_name(path): path for path in paths}
    graph = {}
    for name, path in modules.items():
        imported = _imported(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py")
        graph[name] = {target for target in imported if target in modules and target != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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
            connect(node)
    return components


def test_import_graph__covers_every_module_and_reads_their_imports():
    graph = import_graph()
    assert {"orchestration.models", "orchestration.services.claim", "orchestration.adapters"} <= set(graph)
    assert "orchestration.models" in graph["orchestration.services.claim"]


def test_orchestration__has_no_import_cycle():
    assert _cycles(import_graph()) == []


def test_models__import_nothing_from_services_daemon_web_or_admin():
    above = sorted(target for target in import_graph()["orchestration.models"] if target.startswith(ABOVE_MODELS))
    assert above == []


@pytest.mark.parametrize(
    ("source", "counted"),
    [
        ("from orchestration.services import lease\n", True),
        ("def f():\n    from orchestration.services.lease import lease_get\n", True),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from orchestration.services.lease import x\n",
            False,
        ),
    ],
)
def test_import_graph__counts_imports_inside_functions_but_not_type_checking_ones(source, counted):
    assert ("orchestration.services.lease" in _imported(ast.parse(source), "orchestration.x", False)) is counted

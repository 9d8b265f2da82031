"""migrationlab's modules import one way: the PostgreSQL server and its databases at the bottom, the judge core above
them, the projects' Django side above that, then the tools (the lab, showdown, catalog, judge, watch), then the CLI.

The import graph is read from the source with ast: every `import` and `from ... import` of a migrationlab module,
at module level or inside a function (a lazy import is still a dependency), relative imports resolved. Its rules:
- no cycle, of any length;
- a module imports only modules of its own layer or a lower one (LAYERS; a new module must be given a layer);
- no module imports another's private name (`from x import _y`, or `x._y` on a module it imported): what a module
  shares, it names without an underscore.
Needs no database."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from migrationlab import REPO_ROOT

PACKAGE = REPO_ROOT / "migrationlab"

# Lowest first. A module is placed by its longest matching name (a package's name places its submodules).
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation: errors, ports, processes, lock modes, argument types, scenario.toml", {
        "migrationlab", "migrationlab.errors", "migrationlab.ports", "migrationlab.processes", "migrationlab.locks",
        "migrationlab.arguments", "migrationlab.scenarios",
    }),
    ("the PostgreSQL server and its databases", {"migrationlab.embedded", "migrationlab.databases"}),
    ("the judge core", {"migrationlab.judgecore"}),
    ("the projects' Django side: settings, views, seeding, operations, serving, management commands", {
        "migrationlab.apps", "migrationlab.settings", "migrationlab.environment", "migrationlab.web",
        "migrationlab.seeding", "migrationlab.operations", "migrationlab.resumable", "migrationlab.sync",
        "migrationlab.sync_both_ways", "migrationlab.releases", "migrationlab.serving", "migrationlab.healthcheck",
        "migrationlab.lockjudge", "migrationlab.manage", "migrationlab.wsgi", "migrationlab.gunicorn_conf",
        "migrationlab.management",
    }),
    ("the tools: lab, showdown, catalog, judge, watch", {
        "migrationlab.lab", "migrationlab.showdown", "migrationlab.catalog", "migrationlab.judge",
        "migrationlab.watch",
    }),
    ("the command line", {"migrationlab.cli", "migrationlab.__main__"}),
]


def module_files() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def known(name: str) -> str | None:
    """The migrationlab module `name` is, or lies in (an attribute of it: `migrationlab.lab.start_web`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, source: str | None = None) -> list[tuple[str, str | None, int]]:
    """(imported module, the name taken from it or None, line) for every import of a migrationlab module."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if known(alias.name):
                    found.append((known(alias.name), None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if not known(base):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:  # `from migrationlab import lab`: the module lab
                    found.append((submodule, None, node.lineno))
                else:
                    found.append((known(base), alias.name, node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    return {module: {target for target, _, _ in imports_of(module)} - {module} for module in MODULES}


def layer_of(module: str) -> int | None:
    best = None
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if module == member or module.startswith(member + "."):
                if best is None or len(member) > len(best[1]):
                    best = (index, member)
    return None if best is None else best[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
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
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_every_module():
    edges = graph()
    assert {"migrationlab.lab", "migrationlab.embedded", "migrationlab.watch.command"} <= set(edges)
    # An import inside a function counts: databases imports the embedded server only where it starts one.
    assert "migrationlab.embedded" in edges["migrationlab.databases"]


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer():
    assert [module for module in MODULES if layer_of(module) is None] == []


def test_modules_import_only_their_own_layer_or_lower():
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for module, targets in graph().items() for target in sorted(targets)
              if layer_of(module) is not None and layer_of(target) is not None
              and layer_of(target) > layer_of(module)]
    assert upward == []


@pytest.mark.parametrize("module", ["migrationlab.embedded", "migrationlab.databases", "migrationlab.processes"])
def test_the_server_and_databases_import_nothing_above_them(module):
    assert all(layer_of(target) <= layer_of("migrationlab.databases") for target in graph()[module])


def private_uses(module: str, source: str | None = None) -> list[str]:
    uses = [f"{module}:{line} imports {name} from {target}" for target, name, line in imports_of(module, source)
            if name and name.startswith("_") and not name.startswith("__") and target != module]
    tree = ast.parse(MODULES[module].read_text() if source is None else source)
    bound = {}  # local name -> the migrationlab module it names
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    bound[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and known(node.module) and not node.level:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in MODULES:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = ast.unparse(node.value)
            if (owner in bound and bound[owner] != module and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                uses.append(f"{module}:{node.lineno} uses {owner}.{node.attr}")
    return uses


def test_no_module_uses_another_modules_private_names():
    assert [use for module in MODULES for use in private_uses(module)] == []


def test_the_private_name_check_sees_an_import_and_an_attribute():
    source = ("from migrationlab.lab import _answers\n"
              "def f():\n    from migrationlab import lab\n    return lab._answers, lab.start_web, lab.__doc__\n")
    assert private_uses("migrationlab.cli", source) == [
        "migrationlab.cli:1 imports _answers from migrationlab.lab", "migrationlab.cli:4 uses lab._answers"]

"""The house rules, read from the source (docs/architecture.md): no import circles, imports run
into compat/ and never between the two methods, imports at the top of a module unless a comment
says why they are lazy, and library code never raises the command line's UsageError."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("compat", "jpegedit", "trimesh_decode", "launch")
# modules that are command-line tools: the only ones that may raise compat.cli.UsageError
TOOLS = {"compat.cli", "compat.measure", "jpegedit.cli", "trimesh_decode.cli", "launch.demo", "launch.train"}


def _modules() -> dict[str, Path]:
    mods = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name in one) is, if any."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> list[tuple[ast.stmt, list[str], bool]]:
    """``(statement, modules of ours it imports, inside a function)`` for every import."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.append((child, [a.name for a in child.names], in_function))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                out.append((child, [base] + [f"{base}.{a.name}" for a in child.names], in_function))
            visit(child, inside)

    visit(tree, False)
    return out


def _graph() -> dict[str, set[str]]:
    edges = defaultdict(set)
    for m in MODULES:
        for _, names, _ in _imports(m):
            for n in names:
                target = _resolve(n)
                if target and target != m:
                    edges[m].add(target)
    return edges


def _cycles(edges: dict[str, set[str]], nodes=MODULES) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_module_imports_one_that_imports_it_back_directly_or_around_a_loop():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_loop_through_three_modules():
    edges = defaultdict(set, {"compat.a": {"compat.b"}, "compat.b": {"compat.c"}, "compat.c": {"compat.a"}})
    nodes = ["compat.a", "compat.b", "compat.c", "compat.d"]
    assert _cycles(edges, nodes) == [["compat.a", "compat.b", "compat.c"]]


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("compat", ("jpegedit", "trimesh_decode", "launch")),
        ("jpegedit", ("trimesh_decode", "launch")),
        ("trimesh_decode", ("jpegedit", "launch")),
    ],
)
def test_imports_run_into_compat_and_never_between_the_two_methods(package, forbidden):
    bad = [
        (m, t)
        for m, targets in _graph().items()
        if m.split(".")[0] == package
        for t in targets
        if t.split(".")[0] in forbidden
    ]
    assert bad == []


def test_every_import_inside_a_function_says_why_it_is_lazy():
    unexplained = []
    for m, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node, _, in_function in _imports(m):
            said = lines[max(0, node.lineno - 2) : node.end_lineno]  # the line above, or the statement's own
            if in_function and not any("# lazy:" in line for line in said):
                unexplained.append(f"{path.relative_to(REPO)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert unexplained == []


def _is_command(name: str) -> bool:
    """A function of the command-line layer: ``main``, ``*_main`` or ``*_command``."""
    return name == "main" or name.endswith(("_main", "_command"))


def test_library_code_raises_its_own_errors_not_the_command_lines():
    raisers = []
    for m, path in MODULES.items():
        if m in TOOLS:
            continue
        tree = ast.parse(path.read_text())
        library = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and _is_command(n.name))]
        for node in (sub for top in library for sub in ast.walk(top)):
            if isinstance(node, ast.Raise) and node.exc is not None:
                call = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(call, ast.Name) and call.id == "UsageError":
                    raisers.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert raisers == []

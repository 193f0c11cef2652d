"""runners/ is made of rooms (sub-packages) whose imports point one way: no import cycle between
modules, none between rooms, and the planner and advisor never import runners. Read from the source
(ast), function-local imports included, so nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The modules of ours (in ``modules``) that ``path`` imports, anywhere in the file."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:  # "runners.launch.launch.X" -> the module it names
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    files = {module_name(p): p for p in (REPO / package).rglob("*.py")}
    modules = set(files)
    return {name: imports_of(path, modules) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def room(module: str) -> str:
    """runners.rundir.prepare -> rundir; runners.paths -> paths."""
    return module.split(".")[1] if module.count(".") else "runners"


def test_no_module_of_runners_imports_itself_back():
    graph = import_graph("runners")
    # A package's __init__ runs before its modules: it is not an edge a reader follows.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_rooms_of_runners_import_one_way():
    rooms: dict[str, set[str]] = {}
    for module, deps in import_graph("runners").items():
        rooms.setdefault(room(module), set()).update(room(d) for d in deps if room(d) != room(module))
    rooms.pop("runners", None)
    assert find_cycle(rooms) is None, " -> ".join(find_cycle(rooms))
    # The run's data flow: the run directory knows nothing of who registers or launches it.
    assert not rooms["rundir"] & {"registry", "launch", "cli"}
    assert not rooms["registry"] & {"launch", "cli"}
    assert rooms["paths"] == set()


def test_planner_and_advisor_do_not_import_runners():
    for package in ("planner", "advisor"):
        for path in (REPO / package).rglob("*.py"):
            if path.name == "cli.py":
                continue  # a command line may offer what runners accepts
            mods = {m for m in imports_of(path, {"runners"}) if m == "runners"}
            assert not mods, f"{path.relative_to(REPO)} imports runners"

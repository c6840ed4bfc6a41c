"""The layout holds: no import circle in adapters/ or service/, and no import up the layers.

The layers, bottom up: adapters (engines, ledger, client) know nothing of the service;
the service side's settings (service/config.py, with its URL check service/ssrf.py);
service/jobs (the job types), which read those and the adapters; service (the web
app) on top of all. A module-level import that goes the other way, or two modules that
import each other (directly or round a longer circle), fails here with the circle named.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("adapters", "service")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path, name: str) -> set[str]:
    """Modules of the two packages that ``path`` imports, wherever the import stands (a
    function's import runs too; one under ``TYPE_CHECKING`` is a dependency all the same)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        graph[name] = {m for m in _imports(path, name) if m in paths and m != name}
    return graph


def test_no_two_modules_import_each_other():
    graph = _graph()
    # a package's __init__ re-exports its modules; an edge into it is an edge into them
    circles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_no_import_runs_up_the_layers():
    graph = _graph()
    # the job types may read the service side's settings and its URL check, nothing of
    # the web app; ``from .. import config`` also names the package, which is no import
    base = {"service", "service.config", "service.apikeys", "service.ssrf"}
    upward = [(a, b) for a, deps in graph.items() for b in deps
              if (a.startswith("adapters") and b.startswith("service"))
              or (a.startswith("service.jobs") and b.startswith("service")
                  and not b.startswith("service.jobs") and b not in base)
              or (a in base - {"service"} and b.startswith("service.")
                  and b not in base)]
    assert not upward, f"imports up the layers: {upward}"


def test_no_module_of_adapters_or_service_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420}
    assert not long, f"split these: {long}"

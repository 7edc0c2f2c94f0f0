"""discmed's own import graph, read from the source (every import, top-level and inside functions).

    python scripts/imports.py            # layers (each module after everything it imports), cycles
    python scripts/imports.py --local    # imports of discmed's own modules inside functions, and why

A module imports discmed's own modules at its top; an import inside a function is kept only where
start-up time needs it (a command-line module that must not load torch, FastAPI or pydantic for
`discmed --help`), and the graph has no cycle. tests/test_imports.py holds both.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "discmed"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> list[tuple[str, bool, int]]:
    """(imported discmed module, whether the import is inside a function, line) of one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                out.extend((a.name, inner, child.lineno) for a in child.names if a.name.split(".")[0] == "discmed")
            elif isinstance(child, ast.ImportFrom) and (child.module or "").split(".")[0] == "discmed":
                for a in child.names:  # `from discmed.x import y`: y may be a module of its own
                    sub = f"{child.module}.{a.name}"
                    out.append((sub if sub in known else child.module, inner, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return out


def graph() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """Module → the discmed modules it imports (anywhere); and the function-local imports."""
    mods = modules()
    known = set(mods)
    edges: dict[str, set[str]] = defaultdict(set)
    local: list[tuple[str, str, int]] = []
    for name, path in mods.items():
        for target, inner, line in imports(path, known):
            target = target if target in known else target.rsplit(".", 1)[0]
            if target != name and target != "discmed":
                edges[name].add(target)
            if inner:
                local.append((name, target, line))
        edges.setdefault(name, set())
    return edges, local


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def layers(edges: dict[str, set[str]]) -> list[list[str]]:
    """Modules by depth: layer 0 imports no discmed module, layer n only layers below it."""
    depth: dict[str, int] = {}

    def d(v: str, seen: tuple = ()) -> int:
        if v not in depth:
            below = [d(w, (*seen, v)) for w in edges.get(v, ()) if w not in seen]
            depth[v] = 1 + max(below) if below else 0
        return depth[v]

    for v in edges:
        d(v)
    out: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for v, n in depth.items():
        out[n].append(v)
    return [sorted(x) for x in out]


def main() -> None:
    edges, local = graph()
    if "--local" in sys.argv:
        for name, target, line in sorted(local):
            print(f"{name}:{line} imports {target} inside a function")
        print(f"{len(local)} function-local imports of discmed's own modules")
        return
    for n, layer in enumerate(layers(edges)):
        print(f"layer {n}: {' '.join(layer)}")
    found = cycles(edges)
    print(f"cycles: {found or 'none'}")


if __name__ == "__main__":
    main()

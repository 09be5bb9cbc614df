"""Figures of the code's structure, to compare two commits: modules, lines, import arrows, circles.

    .venv/bin/python bench/import_graph.py                 # the working tree
    .venv/bin/python bench/import_graph.py --rev 65f7f48   # a commit (checked out in a temporary tree)

App code is the three apps and the site (agentos_site), without migrations, tests and bench.
"Arrows" are distinct (importer, imported) pairs of app modules, counting imports inside functions
(grimp, which import-linter uses; imports under `if TYPE_CHECKING:` left out, as the contracts do). A circle is a strongly connected group of modules that import
each other, directly or through others.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import grimp

PACKAGES = ("agents_app", "sessions_app", "telemetry_app", "agentos_site")


def _circles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Tarjan's strongly connected components of size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        work = [(node, iter(sorted(graph.find_modules_directly_imported_by(node) & modules)))]
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        while work:
            current, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child) & modules))))
                    break
                if child in on_stack:
                    low[current] = min(low[current], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[current])
                if low[current] == index[current]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == current:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def measure(root: Path) -> dict[str, object]:
    sys.path.insert(0, str(root))
    try:
        graph = grimp.build_graph(*PACKAGES, cache_dir=None, exclude_type_checking_imports=True)
    finally:
        sys.path.remove(str(root))
    modules = {m for m in graph.modules if ".migrations" not in m and ".testing" not in m}
    files = [
        p
        for package in PACKAGES
        for p in (root / package).rglob("*.py")
        if "migrations" not in p.parts and "testing" not in p.parts
    ]
    lines = sum(len(p.read_text().splitlines()) for p in files)
    arrows = {(a, b) for a in modules for b in graph.find_modules_directly_imported_by(a) if b in modules}
    apps = {}
    for a, b in arrows:
        pa, pb = a.split(".")[0], b.split(".")[0]
        if pa != pb:
            apps[(pa, pb)] = apps.get((pa, pb), 0) + 1
    return {
        "modules": len(files),
        "lines": lines,
        "arrows": len(arrows),
        "app_arrows": dict(sorted(apps.items())),
        "circles": _circles(graph, modules),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", help="a commit to measure instead of the working tree")
    args = parser.parse_args()
    if args.rev:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(f"git archive {args.rev} | tar -x -C {tmp}", shell=True, check=True)
            figures = measure(Path(tmp))
    else:
        figures = measure(Path(__file__).resolve().parent.parent)
    print(f"modules {figures['modules']}, lines {figures['lines']}, import arrows {figures['arrows']}")
    for (a, b), n in figures["app_arrows"].items():  # type: ignore[attr-defined]
        print(f"  {a} -> {b}: {n}")
    circles = figures["circles"]
    print(f"circles: {len(circles)}")  # type: ignore[arg-type]
    for group in circles:  # type: ignore[attr-defined]
        print(f"  {len(group)}: {' <-> '.join(group)}")


if __name__ == "__main__":
    main()

"""The project's import graph, read from the source (AST), never by importing anything.

Two questions are answered from it: which project files a stage script runs (its import closure:
every import statement anywhere in a file, inside functions too, plus the `__init__.py` of every
package a module sits in, since Python runs those first), and whether any modules import each other
in a cycle (explicit imports only: a package's `__init__.py` importing its own submodules is not a
cycle by itself). `sequela deps` prints each stage's closure as dvc.yaml `deps`; the tests fail when
a stage imports a file it does not declare, or when a cycle appears.
"""

from __future__ import annotations

import ast
from pathlib import Path


class ImportGraph:
    """Modules under `roots` (folders on sys.path: the project's src/ and the stage scripts' folder)."""

    def __init__(self, roots: list[Path]):
        self.roots = [Path(r) for r in roots]

    def file_of(self, module: str) -> Path | None:
        """The file that defines `module` under one of the roots, or None (not the project's)."""
        parts = module.split(".")
        for root in self.roots:
            base = root.joinpath(*parts)
            if base.with_suffix(".py").is_file():
                return base.with_suffix(".py")
            if (base / "__init__.py").is_file():
                return base / "__init__.py"
        return None

    def module_of(self, path: Path) -> str:
        for root in self.roots:
            try:
                rel = path.relative_to(root)
            except ValueError:
                continue
            parts = list(rel.with_suffix("").parts)
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        raise ValueError(f"{path} is under none of {self.roots}")

    def imported(self, path: Path) -> set[str]:
        """The project modules `path` names in any import statement, wherever the statement is."""
        tree = ast.parse(path.read_text(), filename=str(path))
        here = self.module_of(path)
        package = here if path.name == "__init__.py" else here.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                # `from pkg import name`: name is a submodule where a file defines it, else an attribute
                names = [
                    f"{base}.{alias.name}" if self.file_of(f"{base}.{alias.name}") else base for alias in node.names
                ]
            else:
                continue
            found.update(n for n in names if n and self.file_of(n))
        found.discard(here)
        return found

    def closure(self, script: Path) -> set[Path]:
        """Every project file that running `script` executes: its imports, theirs, and the
        `__init__.py` of each package on the way."""
        seen: set[Path] = set()
        todo = [Path(script)]
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            for module in self.imported(path):
                parts = module.split(".")
                for i in range(1, len(parts) + 1):  # the parent packages run first
                    todo.append(self.file_of(".".join(parts[:i])))
        return {p for p in seen if p is not None}

    def modules(self) -> list[Path]:
        return sorted(p for root in self.roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)

    def cycles(self) -> list[list[str]]:
        """Each strongly connected group of two or more modules (or a module importing itself)."""
        edges = {self.module_of(p): self.imported(p) for p in self.modules()}
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        groups: list[list[str]] = []

        def visit(v: str) -> None:  # Tarjan's algorithm
            index[v] = low[v] = len(index)
            stack.append(v)
            on_stack.add(v)
            for w in sorted(edges.get(v, ())):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == v:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

        for v in sorted(edges):
            if v not in index:
                visit(v)
        return groups


def minimal_deps(files: set[Path], root: Path) -> list[str]:
    """`files` as dvc.yaml deps relative to `root`: a whole folder where every .py file under it is
    in `files`, the single files otherwise."""
    files = {f.resolve() for f in files}
    out: set[Path] = set()
    for f in files:
        best = f
        for folder in f.parents:
            if folder == root.resolve() or folder.parent == folder:
                break
            inside = {p.resolve() for p in folder.rglob("*.py") if "__pycache__" not in p.parts}
            if inside and inside <= files and folder.name not in ("src", "stages"):
                best = folder
            else:
                break
        out.add(best)
    return sorted(str(p.relative_to(root.resolve())) for p in out)

"""The code each dvc.yaml stage runs against the code it declares.

A stage's `cmd` runs `python stages/<script>.py`; every project file that script imports (its import
closure, cli/imports.py) must be among the stage's `deps`, itself or a folder above it, or a change
to that file would leave the stage's cached results standing. The other way round, a declared code
folder must hold only files the stage runs, so that editing one defense does not rerun every stage.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from sequela.cli.imports import ImportGraph, minimal_deps

SCRIPT = re.compile(r"python\s+(stages/\S+\.py)")
CODE = ("src/", "stages/")


def stages(root: Path) -> dict[str, dict]:
    """dvc.yaml's stage definitions, as written (matrix templates unexpanded)."""
    return yaml.safe_load((root / "dvc.yaml").read_text())["stages"]


def script_of(definition: dict) -> str | None:
    match = SCRIPT.search(definition.get("cmd", ""))
    return match.group(1) if match else None


def graph(root: Path) -> ImportGraph:
    return ImportGraph([root / "src", root / "stages"])


def required(root: Path) -> dict[str, list[str]]:
    """{stage: the code deps its script needs}, folders where the script runs every file in them."""
    g = graph(root)
    return {
        name: minimal_deps(g.closure(root / script), root)
        for name, definition in stages(root).items()
        if (script := script_of(definition))
    }


def problems(root: Path) -> list[str]:
    """One line per undeclared import and per declared code that the stage does not run."""
    g, out = graph(root), []
    for name, definition in stages(root).items():
        script = script_of(definition)
        if script is None:
            continue
        runs = {p.resolve() for p in g.closure(root / script)}
        declared = [d for d in definition.get("deps", []) if isinstance(d, str) and d.startswith(CODE)]
        covered = set()
        for dep in declared:
            path = (root / dep).resolve()
            files = (
                {p.resolve() for p in path.rglob("*.py") if "__pycache__" not in p.parts} if path.is_dir() else {path}
            )
            if not path.exists():
                out.append(f"{name}: declares {dep}, which does not exist")
            elif not files <= runs:
                extra = sorted(str(p.relative_to(root.resolve())) for p in files - runs)
                out.append(f"{name}: declares {dep}, but does not run {', '.join(extra)}")
            covered |= files
        for path in sorted(runs - covered):
            out.append(f"{name}: runs {path.relative_to(root.resolve())} without declaring it")
    return out


DEPS = re.compile(r"^(    deps: \[)(.*?)\]", re.M | re.S)
WIDTH = 120


def flow_list(items: list[str], first: str, indent: str) -> str:
    """`items` as a YAML flow list opening after `first`, wrapped before WIDTH columns."""
    lines, line = [], first
    for i, item in enumerate(items):
        word = f'"{item}"' if "$" in item else item  # a template is quoted, as YAML needs
        word += "]" if i == len(items) - 1 else ","
        if line.strip() and line != first and len(line) + 1 + len(word) > WIDTH:
            lines.append(line)
            line = indent
        line += ("" if line in (first, indent) else " ") + word
    return "\n".join(lines + [line])


def write(root: Path) -> list[str]:
    """Rewrite each stage's code deps in dvc.yaml as its script's import closure requires, the script
    first and the data deps last, as they were; returns the stages whose deps changed."""
    text, definitions = (root / "dvc.yaml").read_text(), stages(root)
    needed, lists = required(root), list(DEPS.finditer(text))
    if list(needed) != list(definitions) or len(lists) != len(definitions):
        raise ValueError("dvc.yaml: every stage runs a script and writes its deps as one flow list `deps: [...]`")
    changed, pieces, start = [], [], 0
    for match, name in zip(lists, definitions):
        old = yaml.safe_load("[" + match.group(2) + "]")
        script = script_of(definitions[name])
        new = [script] + [d for d in needed[name] if d != script]
        new += [d for d in old if not (isinstance(d, str) and d.startswith(CODE))]
        if new != old:
            changed.append(name)
        pieces += [text[start : match.start()], flow_list(new, match.group(1), "      ")]
        start = match.end()
    (root / "dvc.yaml").write_text("".join(pieces) + text[start:])
    return changed

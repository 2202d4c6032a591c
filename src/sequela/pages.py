"""The results pages under docs/results/: one Markdown page per study, rendered from what the report
wrote (its tables, figures and provenance), never typed by hand.

A study is the default grid (reports/) or a named one (studies/<name>.yaml, its reports in
reports/studies/<name>/ once `sequela study` has run it). A page holds the study's description, the
command that rebuilds it, where and when it ran, every table the report wrote (they carry their own
captions), and every figure. A study not yet run gets a page that says so and gives its command.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

# Section titles, in the order a reader wants them; tables not named here follow, by name.
TITLES = {
    "standalone": "Standalone: CA and ASR",
    "claims": "The paper's claims",
    "baselines": "SFT against the baseline defenses",
    "sequela": "Backdoor sequela",
    "transfer": "Transfer paradigm",
    "transfer-sequela": "Transfer paradigm: sequela",
    "encoder": "Encoder paradigm",
    "encoder-sequela": "Encoder paradigm: sequela",
}


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    description: str
    command: str
    reports: Path  # its tables/ and figures/ (and, for a named study, run.json and params.yaml)


def default_study(reports: Path) -> Study:
    return Study("default", "The default grid (digits)",
                 "Every attack, defense, sequela measure, ablation sweep and paradigm smoke cell of params.yaml, "
                 "on the built-in digits set.", "uv run dvc repro", reports)


def named_studies(studies: Path, reports: Path) -> list[Study]:
    found = []
    for path in sorted(studies.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text()) or {}
        description = " ".join(str(spec.get("description", "")).split())
        found.append(Study(path.stem, path.stem, description, f"uv run sequela study studies/{path.name}",
                           reports / "studies" / path.stem))
    return found


def table_order(tables: Path) -> list[Path]:
    present = {p.stem: p for p in tables.glob("*.md")}
    known = [present[name] for name in TITLES if name in present]
    return known + sorted(p for name, p in present.items() if name not in TITLES)


def provenance(study: Study) -> str:
    run = study.reports / "run.json"
    if not run.is_file():
        return "Rebuilt by the command above; the commit that last changed these reports is in their git history."
    info = json.loads(run.read_text())
    text = f"Ran at commit `{info['commit']}` on {info['date']}, on {info['machine']} (threads: {info['threads']})"
    text += f", in {info['seconds'] / 60:.0f} min." if "seconds" in info else "."
    if "report_commit" in info:  # the same cells, reported by a later commit's report code
        text += f" Its report was rebuilt from those cells by the report stage of commit `{info['report_commit']}`."
    return text


def render(study: Study, page_dir: Path) -> str:
    """The page of `study`; every path is relative to the project root, as is page_dir."""
    lines = [f"# {study.title}", "", study.description, "", f"Rebuild: `{study.command}`", ""]
    tables = study.reports / "tables"
    if not tables.is_dir():
        lines += ["**Not run yet**: no reports are committed for this study. The command above builds them.", ""]
        return "\n".join(lines)
    lines += [provenance(study), ""]
    params = study.reports / "params.yaml"
    if params.is_file():
        lines += [f"Parameters: [{params.as_posix()}]({relative(params, page_dir)}).", ""]
    for table in table_order(tables):
        title = TITLES.get(table.stem) or table.stem.replace("ablation-", "Ablation: ")
        lines += [f"## {title}", "", table.read_text().strip(), ""]
    figures = sorted((study.reports / "figures").glob("*.png"))
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{f.stem}]({relative(f, page_dir)})\n" for f in figures]
    return "\n".join(lines)


def relative(path: Path, page_dir: Path) -> str:
    """A link from a page in page_dir to path, both relative to the project root."""
    return "../" * len(page_dir.parts) + path.as_posix()


def index(studies: list[Study]) -> str:
    lines = ["# Results", "",
             "One page per study, written by the pipeline's `pages` stage from the committed reports; rerun a",
             "study with its command, then `uv run dvc repro pages`.", "",
             "| page | what | command | status |", "|:--|:--|:--|:--|"]
    for s in studies:
        run = s.reports / "run.json"
        status = ("not run yet" if not (s.reports / "tables").is_dir() else
                  f"ran at `{json.loads(run.read_text())['commit']}`" if run.is_file() else
                  "rebuilt by `dvc repro`" if s.name == "default" else "committed")
        what = s.description if len(s.description) <= 110 else s.description[:107].rsplit(" ", 1)[0] + " ..."
        lines.append(f"| [{s.name}]({s.name}.md) | {what} | `{s.command}` | {status} |")
    return "\n".join(lines) + "\n"

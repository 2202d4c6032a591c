"""The results pages under docs/results/: one Markdown page per study, rendered from what the report
wrote (its tables, figures and provenance), never typed by hand.

A study is the default grid (reports/) or a named one (studies/<name>.yaml, its reports in
reports/studies/<name>/ once `sequela study` has run it). A page holds the study's description, the
command that rebuilds it, where and when it ran, every table the report wrote (they carry their own
captions), and every figure. A study not yet run gets a page that says so and gives its command.

A named study's run.json records the commit it ran at. When a later commit changed the code its
stages run (the `src/` and `stages/` deps dvc.yaml declares), the page opens with a banner naming
both commits and the rebuild command. That is read from git when the page is built; without the
history (no git, a shallow clone that lacks the recorded commit) no banner is drawn.

findings.md puts the paper's claims (and the exploratory ones) against the studies that test them,
one verdict per cell, from each study's claims.csv.
"""

from __future__ import annotations

import ast
import csv
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from sequela.report.claims import BENIGN_SCOPE, CONFIRMATORY, POOLED, Claim, benign_claim, claims

# Section titles, in the order a reader wants them; tables not named here follow, by name.
TITLES = {
    "standalone": "Standalone: CA and ASR",
    "claims": "The paper's claims",
    "baselines": "SFT against the baseline defenses",
    "benign": "What each defense costs a model without a backdoor",
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
    return Study(
        "default",
        "The default grid (digits)",
        "Every attack, defense, sequela measure and ablation sweep of params.yaml, and the transfer smoke "
        "cell, on the built-in digits set.",
        "uv run dvc repro",
        reports,
    )


def named_studies(studies: Path, reports: Path) -> list[Study]:
    found = []
    for path in sorted(studies.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text()) or {}
        description = " ".join(str(spec.get("description", "")).split())
        found.append(
            Study(
                path.stem,
                path.stem,
                description,
                f"uv run sequela study studies/{path.name}",
                reports / "studies" / path.stem,
            )
        )
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


def render(study: Study, page_dir: Path, stale: Stale | None = None) -> str:
    """The page of `study`; every path is relative to the project root, as is page_dir."""
    lines = [f"# {study.title}", "", study.description, "", f"Rebuild: `{study.command}`", ""]
    tables = study.reports / "tables"
    if not tables.is_dir():
        lines += ["**Not run yet**: no reports are committed for this study. The command above builds them.", ""]
        return "\n".join(lines)
    if stale is not None:
        lines += [banner(study, stale), ""]
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
    lines = [
        "# Results",
        "",
        "One page per study, written by the pipeline's `pages` stage from the committed reports; rerun a",
        "study with its command, then `uv run dvc repro pages`. [The findings at a glance](findings.md): every",
        "claim against every study that tests it. [Published directions](comparison.md): what the fine-tuning",
        "family's papers report, in their settings, against the rows that test it here.",
        "",
        "A page whose report ran at a commit older than the last change to the code its stages run opens",
        "with a banner saying so. The stage reads that from git when it runs; after a commit that changes",
        "only code, `uv run dvc repro -f pages` redraws the banners.",
        "",
        "| page | what | command | status |",
        "|:--|:--|:--|:--|",
    ]
    for s in studies:
        run = s.reports / "run.json"
        status = (
            "not run yet"
            if not (s.reports / "tables").is_dir()
            else f"ran at `{json.loads(run.read_text())['commit']}`"
            if run.is_file()
            else "rebuilt by `dvc repro`"
            if s.name == "default"
            else "committed"
        )
        what = s.description if len(s.description) <= 110 else s.description[:107].rsplit(" ", 1)[0] + " ..."
        lines.append(f"| [{s.name}]({s.name}.md) | {what} | `{s.command}` | {status} |")
    return "\n".join(lines) + "\n"


# ---- stale reports -------------------------------------------------------------------------------


class NoHistory(Exception):
    """Git cannot say which commit changed what: no git here, or a history (a shallow clone) that
    lacks the commit a report recorded."""


@dataclass(frozen=True)
class Stale:
    recorded: str  # the commit the study's cells ran at (run.json)
    changed: str  # the last commit that changed the code its stages run
    files: tuple[str, ...]  # the code files changed between the two


def code_deps(dvc_yaml: Path, params: dict | None = None) -> list[str]:
    """Every `src/` and `stages/` path a computing stage of dvc.yaml declares: the code whose change
    can change a report. The pages stage is left out: it only draws what the reports hold. Given the
    params a study ran with, so is every stage with no cell under them (a matrix over an empty list,
    e.g. `external.cells: []`): a change to code only such a stage runs leaves the study's report as
    it was."""
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    return sorted(
        {
            dep
            for name, stage in stages.items()
            if name != "pages" and has_cells(stage, params)
            for dep in stage.get("deps", [])
            if isinstance(dep, str) and dep.startswith(("src/", "stages/"))
        }
    )


def has_cells(stage: dict, params: dict | None) -> bool:
    """False when one of the stage's matrix axes is `${key}` naming an empty list in `params`."""
    for axis in (stage.get("matrix") or {}).values():
        if params is None or not (isinstance(axis, str) and axis.startswith("${") and axis.endswith("}")):
            continue
        node = params
        for part in axis[2:-1].split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, list) and not node:
            return False
    return True


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        raise NoHistory("git is not installed") from None


def staleness(study: Study, root: Path, code: list[str]) -> Stale | None:
    """Stale when a file of `code` differs between the commit the study recorded and HEAD; the
    banner names the last commit that changed one of them. A study without run.json (the default
    grid, which dvc.lock tracks) or without code to check is never stale. Raises NoHistory when git
    cannot tell."""
    run = root / study.reports / "run.json"
    if not run.is_file() or not code:
        return None
    recorded = str(json.loads(run.read_text())["commit"])
    if _git(root, "rev-parse", "--git-dir").returncode != 0:
        raise NoHistory(f"{root.resolve()} is not a git checkout")
    if _git(root, "cat-file", "-e", f"{recorded}^{{commit}}").returncode != 0:
        raise NoHistory(
            f"this clone's history lacks commit {recorded} ({study.name}'s run.json); "
            "a shallow clone does: git fetch --unshallow"
        )
    # What counts is the code as it is, not the commits that touched it: a change made and undone
    # since the recorded commit leaves the report as current as it was.
    files = [
        f
        for f in _git(root, "diff", "--name-only", recorded, "HEAD", "--", *code).stdout.split()
        if not same_program(_git(root, "show", f"{recorded}:{f}"), _git(root, "show", f"HEAD:{f}"), f)
    ]
    if not files:
        return None
    return Stale(recorded, last_program_change(root, recorded, files), tuple(files))


def last_program_change(root: Path, recorded: str, files: list[str]) -> str:
    """The newest commit since `recorded` that changed what one of `files` runs (same_program), so
    that a later edit to a docstring is not named as the change."""
    commits = _git(root, "log", "--format=%h", f"{recorded}..HEAD", "--", *files).stdout.split()
    for commit in commits:
        touched = _git(root, "diff", "--name-only", f"{commit}^", commit, "--", *files).stdout.split()
        if any(
            not same_program(_git(root, "show", f"{commit}^:{f}"), _git(root, "show", f"{commit}:{f}"), f)
            for f in touched
        ):
            return commit
    return commits[0] if commits else _git(root, "log", "-1", "--format=%h", "--", *files).stdout.strip()


def same_program(old: subprocess.CompletedProcess, new: subprocess.CompletedProcess, path: str) -> bool:
    """Whether two versions of a file run the same: for Python, the same syntax tree once docstrings
    are dropped (comments never reach it), so an edit to a comment or a docstring leaves a report
    current; any other file, or one missing or unparsable on either side, only when byte-equal."""
    if old.returncode or new.returncode:
        return False
    if not path.endswith(".py"):
        return old.stdout == new.stdout
    try:
        return program(old.stdout) == program(new.stdout)
    except SyntaxError:
        return False


def program(source: str) -> str:
    """The syntax tree of Python `source` without its docstrings, as text."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def banner(study: Study, stale: Stale) -> str:
    shown = ", ".join(f"`{f}`" for f in stale.files[:6])
    more = f" and {len(stale.files) - 6} more" if len(stale.files) > 6 else ""
    changed = f" ({shown}{more})" if shown else ""
    return (
        f"> **Stale report.** This study ran at commit `{stale.recorded}`; the code its stages run last changed "
        f"at commit `{stale.changed}`{changed}. Its figures may differ at the current code. Rebuild: "
        f"`{study.command}`, then `uv run dvc repro pages`."
    )


# ---- the findings at a glance ----------------------------------------------------------------------

# The findings page's columns: heading, study, and the (paradigm, dataset) whose pooled rows it shows.
# A study's report has one pooled row per claim and (paradigm, dataset); each column picks one.
COLUMNS = (
    ("digits, 5 seeds", "digits-5-seeds", "standalone", "digits"),
    ("GTSRB", "gtsrb-cpu", "standalone", "gtsrb"),
    ("MNIST", "mnist", "standalone", "mnist"),
    ("transfer MNIST → digits", "mnist", "transfer", "mnist-to-digits"),
    ("encoder digits → digits", "encoder-pairs", "encoder", "digits-to-digits"),
    ("fine-tuning family, digits", "fine-tuning-family", "standalone", "digits"),
    ("fine-tuning family, GTSRB, BadNets", "gtsrb-family-badnets", "standalone", "gtsrb"),
    ("fine-tuning family, GTSRB, BadNets + Blended", "gtsrb-family-badnets-blended", "standalone", "gtsrb"),
)
WHOLE = (POOLED, BENIGN_SCOPE)  # the scopes a study's column shows: its pooled rows, and the benign condition
MARKS = {"supported": "✔", "contradicted": "✘", "inconclusive": "~", "not planted": "–"}
OLD_FORMAT = "old format (unadjusted)"


def claim_key(text: str) -> str:
    """A claim's name without its bound in brackets: the name is the same in every report format,
    the bound's wording is not ("ASR after FT > 0.5" became "... more than 0.5 above ...")."""
    return text.split(" (", 1)[0].strip()


@dataclass(frozen=True)
class Cell:
    verdict: str  # a key of MARKS, or "" when the study has no such row
    mean: float | None = None
    interval: str = ""
    level: str = ""
    n: int = 0
    compared: str = ""  # "figure: model a - model b", as the study's report wrote it


def read_claims(path: Path) -> tuple[list[dict], bool]:
    """The rows of a claims.csv and whether it is in the old format: no "family" column, unadjusted
    95% intervals in "95% CI"."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, bool(rows) and "family" not in rows[0]


def cell(row: dict | None) -> Cell:
    if row is None:
        return Cell("")
    n = int(float(row.get("n") or 0))
    try:
        mean = float(row.get("mean diff", ""))
    except ValueError:
        mean = None
    if n == 0 or mean is None or mean != mean:  # an empty pooled row: nothing was measured
        return Cell("not planted" if row.get("verdict") == "not planted" else "", n=n)
    interval = row.get("CI") or row.get("95% CI") or ""
    level = row.get("CI level") or "95% (unadjusted)"
    return Cell(row.get("verdict", "").strip(), mean, interval, level, n, row.get("compared", ""))


def show(c: Cell) -> str:
    if not c.verdict:
        return "– not run"
    if c.mean is None:
        return f"{MARKS.get(c.verdict, '?')} {c.verdict}"
    return f"{MARKS.get(c.verdict, '?')} {c.mean:+.3f} {c.interval}, n = {c.n}"


def claim_columns(reports: Path, columns) -> tuple[list[str], dict[tuple[str, str, str], Cell]]:
    """Each column's heading (a link to its study's page, marked where the study has not run or its
    report is in the old format) and its cells by (claim name, scope, heading), from the study's
    reports/studies/<name>/tables/claims.csv rows of the column's (paradigm, dataset)."""
    headings, cells = [], {}
    for heading, name, paradigm, dataset in columns:
        path = reports / "studies" / name / "tables" / "claims.csv"
        link = f"[{heading}]({name}.md)"
        if not path.is_file():
            headings.append(f"{link} (not run yet)")
            continue
        found, old = read_claims(path)
        headings.append(f"{link}<br>{OLD_FORMAT}" if old else link)
        for row in found:
            if (row.get("paradigm"), row.get("dataset")) == (paradigm, dataset):
                cells[(claim_key(row.get("claim", "")), row.get("scope", ""), heading)] = cell(row)
    return headings, cells


def findings(reports: Path, columns=COLUMNS, stale: dict[str, Stale] | None = None) -> str:
    """findings.md: a row per claim (the paper's, then the exploratory ones), a column per study, from
    each study's reports/studies/<name>/tables/claims.csv; then the rows that contradict a claim, and
    the studies whose report is older than the code (`stale`, by study name)."""
    paper = [*claims("mia"), benign_claim()]
    rows = [(c, "confirmatory") for c in paper[:CONFIRMATORY]] + [(c, "exploratory") for c in paper[CONFIRMATORY:]]
    headings, found = claim_columns(reports, columns)
    grid = {(claim, heading): c for (claim, scope, heading), c in found.items() if scope in WHOLE}
    lines = [
        "# The findings at a glance",
        "",
        "Each claim against each study that tests it: the verdict of the study's pooled row (\"all attacks "
        '(seed means)": per seed, the mean over the attacks planted in every seed), the mean paired '
        "difference, its interval and n, the number of seeds. Written by the `pages` stage from the "
        "studies' claims tables; each column heading links to its study's page, where the full table "
        "says which attacks were left out and why.",
        "",
        "✔ supported, ✘ contradicted, ~ inconclusive, – not planted or not run. The paper's claims "
        "(confirmatory) are Holm-adjusted per paradigm and dataset, each interval at the level of the Holm "
        "step that decided it; exploratory rows, and every row of a study marked "
        f'"{OLD_FORMAT}" (its report predates the adjustment), give the unadjusted 95% t-interval.',
        "",
        "| claim | family | " + " | ".join(headings) + " |",
        "|:--|:--|" + ":--|" * len(headings),
    ]
    contradicted = []
    for claim, family in rows:
        cells = [grid.get((claim_key(claim.text), heading), Cell("")) for heading, *_ in columns]
        if family == "exploratory" and not any(c.verdict for c in cells):
            continue  # a claim no study here tests
        lines.append(f"| {claim.text} | {family} | " + " | ".join(show(c) for c in cells) + " |")
        contradicted += [
            (claim, family, heading, c) for (heading, *_), c in zip(columns, cells) if c.verdict == "contradicted"
        ]
    lines += ["", "## Rows that contradict a claim", ""]
    for family, title in (("confirmatory", "The paper's claims"), ("exploratory", "Exploratory claims")):
        mine = [(claim, heading, c) for claim, f, heading, c in contradicted if f == family]
        lines += [f"{title}:", ""]
        lines += [f"- {heading}: {said(claim, c)}" for claim, heading, c in mine] or ["- none", ""]
        lines += [""] if mine else []
    old = [(heading, stale[name]) for heading, name, *_ in columns if stale and name in stale]
    if old:
        lines += [
            "## Columns older than the code",
            "",
            "These studies ran at a commit older than the last change to the code their stages run; "
            "their pages name what changed and the command that reruns them.",
            "",
        ]
        lines += [f"- {heading}: ran at `{s.recorded}`, code changed at `{s.changed}`" for heading, s in old]
    return "\n".join(lines).rstrip() + "\n"


def said(claim: Claim, c: Cell) -> str:
    """One contradicted row, plainly: the claim, what it needs, what the study measured."""
    side = f"below {claim.below:g}" if claim.below is not None else f"above {claim.above:g}"
    compared = c.compared or f"{claim.figure}: {claim.a} - {claim.b}"
    return (
        f'not "{claim.text}". The claim needs the difference {compared} {side}; the mean '
        f"difference is {c.mean:+.3f}, its {c.level} interval {c.interval} (n = {c.n}) lies wholly on the "
        "other side."
    )

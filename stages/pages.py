"""pages: docs/results/, one page per study (the default grid and each studies/<name>.yaml), from
the reports the report stage and `sequela study` wrote (src/sequela/pages.py), findings.md, the
claims against the studies that test them, and comparison.md, the published directions against the
rows that test them (src/sequela/comparison.py).

Whether a study's report is older than the code is read from git as the page is built; git is not a
dep of the stage, so a `dvc repro` with nothing changed still skips it."""

from pathlib import Path

import yaml

from sequela import comparison, pages
from sequela.pipeline.errors import exit_on_error
from sequela.pipeline.io import atomic_write_text

PAGES, REPORTS, STUDIES = Path("docs/results"), Path("reports"), Path("studies")


def main() -> None:
    studies = [pages.default_study(REPORTS), *pages.named_studies(STUDIES, REPORTS)]
    unknown, stale = [], {}
    for study in studies:
        ran_with = study.reports / "params.yaml"  # a stage with no cell under these params is not its code
        code = pages.code_deps(Path("dvc.yaml"), yaml.safe_load(ran_with.read_text()) if ran_with.is_file() else None)
        try:
            if (found := pages.staleness(study, Path("."), code)) is not None:
                stale[study.name] = found
        except pages.NoHistory as why:
            unknown.append(f"{study.name} ({why})")
        atomic_write_text(pages.render(study, PAGES, stale.get(study.name)), PAGES / f"{study.name}.md")
    atomic_write_text(pages.findings(REPORTS, stale=stale), PAGES / "findings.md")
    atomic_write_text(comparison.page(REPORTS), PAGES / "comparison.md")
    atomic_write_text(pages.index(studies), PAGES / "README.md")
    print(f"{len(studies)} pages, findings.md and comparison.md in {PAGES}/")
    if unknown:  # one note for the run, not one per page
        print(f"note: no stale-report banners for {len(unknown)} studies; git cannot tell: {'; '.join(unknown)}")


if __name__ == "__main__":
    exit_on_error(main)

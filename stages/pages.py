"""pages: docs/results/, one page per study (the default grid and each studies/<name>.yaml), from
the reports the report stage and `sequela study` wrote (src/sequela/pages.py)."""

from pathlib import Path

from sequela import pages
from sequela.errors import exit_on_error
from sequela.io import atomic_write_text

PAGES, REPORTS, STUDIES = Path("docs/results"), Path("reports"), Path("studies")


def main() -> None:
    studies = [pages.default_study(REPORTS), *pages.named_studies(STUDIES, REPORTS)]
    for study in studies:
        atomic_write_text(pages.render(study, PAGES), PAGES / f"{study.name}.md")
    atomic_write_text(pages.index(studies), PAGES / "README.md")
    print(f"{len(studies)} pages in {PAGES}/")


if __name__ == "__main__":
    exit_on_error(main)

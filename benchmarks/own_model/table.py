"""The table of the own-model check in docs/own-model.md, from the reports check.sh leaves.

    python benchmarks/own_model/table.py ../own-model

Reads WORK/<dataset>-<arch>-w<width>/trained/trained.json and defended-<share>-<rule>/report.json and
writes, between the two marker lines of docs/own-model.md, one table per model with the date, this
machine and the commit. A model's table replaces that model's earlier one; the tables of models not in
WORK (measured elsewhere, or earlier) stay as they are. Nothing in them is typed by hand.
"""

from __future__ import annotations

import datetime
import json
import statistics
import subprocess
import sys
from pathlib import Path

from sequela.cli.study import machine

DOC = Path("docs/own-model.md")
BEGIN, END = "<!-- own-model-check: begin -->", "<!-- own-model-check: end -->"
MODEL = "<!-- own-model-check model: "  # opens one model's table, named by its folder
REPORTS = "defended-*/report.json"
DROP, ASR_TARGET = 0.05, 0.1  # the targets: CA within 0.05 of the given model's; SFT's ASR at most 0.1


def spread(values: list[float], digits: int = 3) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def rows(folder: Path) -> list[str]:
    """The table rows of one model's folder: per report (share, rule), FT and SFT."""
    out = []
    trained = json.loads((folder / "trained" / "trained.json").read_text())
    dataset = folder.name.split("-")[0]
    for report_file in sorted(folder.glob("defended-*/report.json"), key=lambda p: p.parent.name):
        report = json.loads(report_file.read_text())
        _, share, rule = report_file.parent.name.split("-")
        runs = [report["runs"][str(s)]["models"] for s in report["seeds"]]
        given_ca = [r["none"]["ca"] for r in runs]
        for name in ("ft", "sft"):
            if name not in runs[0]:
                continue
            drop = [r[name]["ca"] - g for r, g in zip(runs, given_ca)]
            asr = [r[name]["asr"] for r in runs]
            scales = sorted({r[name].get("lr_scale", 1.0) for r in runs}, reverse=True)
            keeps = statistics.mean(drop) >= -DROP
            met = keeps and (name == "ft" or statistics.mean(asr) <= ASR_TARGET)
            out.append(
                f"| {dataset} | {trained['arch']} (width {trained['width']}) | {trained['ca']:.3f} / "
                f"{trained['asr']:.3f} | {float(share):.0%} ({report['n_train']} + {report['n_val']}) | {rule} | "
                f"{name} | {', '.join(f'x{s:g}' for s in scales)} | {spread([r[name]['ca'] for r in runs])} | "
                f"{spread(drop)} | {spread(asr)} | {spread([r[name]['val_ca'] for r in runs])} | "
                f"{'yes' if report['collapse'][name]['collapsed'] else 'no'} | "
                f"{spread([r[name]['seconds'] for r in runs], 0)} | {len(runs)} | "
                f"{'yes' if met else 'no'} |"
            )
    return out


def model_block(folder: Path, commit: str) -> list[str]:
    return [
        f"{MODEL}{folder.name} -->",
        "",
        f"Written {datetime.date.today().isoformat()} on {machine()}, at commit {commit}, from the reports of "
        "`benchmarks/own_model/check.sh`. Mean ± sd over the n seeds of `sequela defend`; ΔCA is the "
        "defended model's CA minus the given model's on the same test rows, per seed. Met: CA within "
        f"{DROP} of the given model's, and for SFT also ASR at most {ASR_TARGET}.",
        "",
        "| data | model | given CA / ASR | defender's share (train + val rows) | lr rule | defense | factor kept "
        "| CA | ΔCA | ASR | val CA | collapse flagged | seconds | n | met |",
        "|:--|:--|--:|--:|:--|:--|:--|--:|--:|--:|--:|:--|--:|--:|:--|",
        *rows(folder),
        "",
    ]


def blocks(region: str) -> dict[str, str]:
    """The region's tables by model folder name, each from its marker line to the next."""
    parts = region.split(MODEL)[1:]
    return {part.split(" -->", 1)[0]: (MODEL + part).rstrip("\n") + "\n" for part in parts}


def main() -> None:
    work = Path(sys.argv[1])
    folders = [f.parents[1] for f in sorted(work.glob("*/trained/trained.json")) if any(f.parents[1].glob(REPORTS))]
    if not folders:
        sys.exit(f"{work}: no */trained/trained.json with {REPORTS} beside it")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{DOC}: the marker lines {BEGIN} and {END} are missing")
    head, rest = text.split(BEGIN, 1)
    region, tail = rest.split(END, 1)
    tables = blocks(region)
    for folder in folders:
        tables[folder.name] = "\n".join(model_block(folder, commit)).rstrip("\n") + "\n"
    body = "\n".join(tables[name] for name in sorted(tables))
    DOC.write_text(head + BEGIN + "\n\n" + body + "\n" + END + tail)
    print(f"{DOC}: tables of {', '.join(f.name for f in folders)} written; {len(tables)} tables in all")


if __name__ == "__main__":
    main()

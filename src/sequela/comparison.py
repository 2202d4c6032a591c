"""comparison.md: the directions published for the fine-tuning family, against what the studies here
measured.

Each published direction is stated with the setting it was measured in (a ResNet-18 on CIFAR-10 is not
the compact CNN on GTSRB), and each is read against the rows of the claims tables that test it: a
claim and a scope (one attack, or the pooled "all attacks (seed means)"), in each study that has
them. The verdicts are the studies' own (report/claims.py); this page only places them side by side.
The low-poison direction has no claim row: its test is the poison-rate sweep's table, linked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sequela.pages import Cell, claim_columns, claim_key, show
from sequela.report.claims import POOLED, PURIFIERS


@dataclass(frozen=True)
class Direction:
    source: str  # who published it, and where
    setting: str  # what it was measured on
    finding: str  # what they report, with their figures where the page quotes them
    rows: tuple[tuple[str, str], ...]  # (claim text, scope) rows of the claims tables that test it
    table: str = ""  # a study's table that tests it, where no claim row does: "<study>/<table>"


FT_SAM = "FT-SAM (Zhu et al., ICCV 2023), Table 1"
CIFAR = "CIFAR-10, PreAct-ResNet-18, 10% poison rate, the defender holding 5% of the clean training data"

DIRECTIONS = (
    Direction(
        FT_SAM,
        CIFAR,
        "plain FT leaves Blended in place: CA/ASR 93.44/97.71 backdoored, 92.48/82.22 after FT, 92.44/4.91 "
        "after FT-SAM",
        (
            ("FT leaves the backdoor in place", "blended"),
            ("FT-SAM leaves a lower ASR than FT", "blended"),
        ),
    ),
    Direction(
        FT_SAM,
        CIFAR,
        "plain FT leaves the low-frequency trigger (LF) in place where FT-SAM removes it",
        (
            ("FT leaves the backdoor in place", "lf"),
            ("FT-SAM leaves a lower ASR than FT", "lf"),
        ),
    ),
    Direction(
        "FST (Min et al., NeurIPS 2023)",
        "ResNet-18 on CIFAR-10 among others, poison rates down to a fraction of a percent",
        "vanilla fine-tuning fails as the poison rate falls, where FST (a new head pushed away from the "
        "old one) removes the backdoor",
        (("FST leaves a lower ASR than FT", POOLED),),
        "gtsrb-poison-rate/ablation-poison_rate",
    ),
    Direction(
        "Min et al. (NeurIPS 2024), the retuning attack",
        "ResNet-18 on CIFAR-10 among others; the retuning attack fine-tunes on the defender's data with 5 "
        "poisoned images among 1,000 for 5 epochs",
        "every purified model regains a high ASR under the retuning attack (P-ASR), faster than a clean "
        "model; exact purification (EP), which knows the trigger, does not",
        tuple(
            row
            for name in PURIFIERS.values()
            for row in (
                (f"After {name} the model relearns the backdoor faster than the clean model", POOLED),
                (f"After {name} the model relearns the backdoor no faster than after EP", POOLED),
            )
        ),
    ),
)

# The studies read, as (heading, study name, paradigm, dataset); the page has a column per study.
STUDIES = (
    ("GTSRB, BadNets", "gtsrb-family-badnets", "standalone", "gtsrb"),
    ("GTSRB, BadNets + Blended", "gtsrb-family-badnets-blended", "standalone", "gtsrb"),
    ("GTSRB, all attacks", "gtsrb-family", "standalone", "gtsrb"),
    ("digits, fine-tuning family", "fine-tuning-family", "standalone", "digits"),
)


def page(reports: Path, studies=STUDIES) -> str:
    headings, cells = claim_columns(reports, studies)
    lines = [
        "# Published directions against the studies here",
        "",
        "What the fine-tuning family's papers report, each with the setting it was measured in, and the "
        "rows of this project's claims tables that test it, study by study. Written by the `pages` stage "
        "from the studies' claims tables. Every row here is exploratory (report/claims.py): the verdict "
        "is the study's unadjusted 95% t-interval over seeds. The settings differ: the published figures "
        "come from ResNet-18-sized networks on CIFAR-10, the rows here from the compact CNN on GTSRB or the "
        "small CNN on digits, trained for far fewer epochs, so a verdict says whether the direction holds "
        "here, not whether the published figure is reproduced.",
        "",
        "✔ supported, ✘ contradicted, ~ inconclusive, – not planted or not run.",
    ]
    for direction in DIRECTIONS:
        lines += ["", f"## {direction.source}: {direction.finding}", "", f"Setting: {direction.setting}.", ""]
        if direction.table:
            study, table = direction.table.split("/")
            lines += [f"Tested by the table `{table}` of [{study}]({study}.md) (no claim row).", ""]
        lines += ["| claim | scope | " + " | ".join(headings) + " |", "|:--|:--|" + ":--|" * len(headings)]
        for claim, scope in direction.rows:
            shown = [show(cells.get((claim_key(claim), scope, heading), Cell(""))) for heading, *_ in studies]
            lines.append(f"| {claim} | {scope} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"

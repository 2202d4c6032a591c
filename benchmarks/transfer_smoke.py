"""Which built-in downstream task carries a shipped digits backdoor: the transfer paradigm's smoke pair.

The transfer cell's "none" model is a new head trained on the frozen backdoored backbone; "clean" is
the same head on the clean reference model (the trigger's floor). For each digits variant below
(same labels and splits, every image transformed) and each seed of a finished default grid, this
trains both heads exactly as stages/transfer.py does and prints their CA and ASR. A variant is a
usable smoke pair where "none" clears the floor by the report's planting lift (0.5) in every seed.

    uv run dvc repro train              # the default grid's backdoored and clean digits models
    uv run python benchmarks/transfer_smoke.py --attacks badnets blended

It reads the workspace's data/standalone/digits/seed<k>/ and writes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from sequela import models
from sequela.attacks.registry import load_artefact
from sequela.paradigms import downstream
from sequela.pipeline import layout
from sequela.sources import loaders
from sequela.training.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]

# The registered variants (loaders.VARIANTS: digits-rot90, digits-mirror) and four more candidates.
CANDIDATES = {
    "digits": ("unchanged", lambda x: x),
    "digits-shift1": ("shifted one pixel down and right", lambda x: torch.roll(x, (1, 1), dims=(2, 3))),
    "digits-rot180": ("turned half a turn", lambda x: torch.rot90(x, 2, dims=(2, 3))),
    "digits-invert": ("inverted, 255 - x", lambda x: 255 - x),
    **loaders.VARIANTS,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attacks", nargs="+", default=["badnets"])
    parser.add_argument("--variants", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    args = parser.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    torch.set_num_threads(1)
    device = torch.device("cpu")
    recipe = Recipe.from_params(params, "digits")
    base = loaders.load_digits(params["data"]["split_seed"], params["data"]["test_fraction"])
    print("| attack | variant | seed | none CA | none ASR | clean CA | clean ASR (floor) | lift |")
    print("|---|---|---|---|---|---|---|---|")
    for attack in args.attacks:
        for variant in args.variants:
            ds = loaders.transformed(base, variant, *CANDIDATES[variant])
            for seed in params["grid"]["seeds"]:
                trigger, _, meta = load_artefact(layout.poison("digits", attack, seed), device)
                cell = downstream.Cell(
                    ds,
                    trigger,
                    meta["target"],
                    recipe,
                    params["transfer"]["head"],
                    params["defense"],
                    device,
                    seed,
                    params["curves"]["eval_n"],
                )
                none = downstream.baseline(cell, *models.load(layout.model("digits", attack, seed), device)).figures
                clean = downstream.baseline(cell, *models.load(layout.clean_model("digits", seed), device)).figures
                print(
                    f"| {attack} | {variant} | {seed} | {none['ca']:.3f} | {none['asr']:.3f} | {clean['ca']:.3f} | "
                    f"{clean['asr']:.3f} | {none['asr'] - clean['asr']:+.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

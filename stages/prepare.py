"""prepare@<dataset>: raw data -> data/prepared/<dataset>/{data.safetensors, meta.json}."""

import argparse

import layout
from sequela import data
from sequela.config import load_params, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    args = parser.parse_args()
    params = load_params()
    settings = params["data"]
    seed = settings["split_seed"]
    ds = data.load(args.dataset, settings["root"], seed=seed, test_fraction=settings["test_fraction"])
    ds = data.reserve_sequela_splits(ds, settings["shadow_fraction"], settings["holdout_fraction"], seed)
    data.save_prepared(ds, layout.prepared(args.dataset))
    print(f"prepared {ds.name}: {len(ds.train)} train, {len(ds.test)} test, {len(ds.shadow)} shadow, "
          f"{len(ds.holdout)} membership holdout, {len(ds.shadow_out)} shadow non-members; images {ds.image_shape}")


if __name__ == "__main__":
    run_stage(main)

"""prepare@<dataset>: raw data -> data/prepared/<dataset>/{splits.safetensors, meta.json}."""

from sequela.datasets import splits
from sequela.pipeline import layout
from sequela.sources import loaders
from stage import open_stage, run_main


def main() -> None:
    stage = open_stage(__doc__, "dataset", device=False)
    args, params = stage.args, stage.params
    settings = params["data"]
    seed = settings["split_seed"]
    ds = loaders.load(args.dataset, settings["root"], seed=seed, test_fraction=settings["test_fraction"])
    ds = splits.reserve_sequela_splits(ds, settings["shadow_fraction"], settings["holdout_fraction"], seed)
    splits.save_prepared(ds, layout.prepared(args.dataset))
    print(
        f"prepared {ds.name}: {len(ds.train)} train, {len(ds.test)} test, {len(ds.shadow)} shadow, "
        f"{len(ds.holdout)} membership holdout, {len(ds.shadow_out)} shadow non-members; images {ds.image_shape}"
    )
    if ds.train.groups is not None:  # near-duplicate frames (GTSRB's tracks) were kept on one side
        print(
            f"  train and shadow carved by whole groups: {ds.train.groups.unique().numel()} and "
            f"{ds.shadow.groups.unique().numel()} groups"
        )


if __name__ == "__main__":
    run_main(main)

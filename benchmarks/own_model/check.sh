#!/usr/bin/env bash
# The own-model check: a backdoored network trained outside the pipeline (train_plain.py), converted,
# and defended by `sequela defend` with FT and SFT from the defender's 5% and 10% shares, 3 seeds.
#
#   benchmarks/own_model/check.sh gtsrb preact_resnet18 64 30 ../own-model
#   DATASET  ARCH  WIDTH (64: the standard network)  EPOCHS of its training  WORK (outside the checkout)
#
# Run from the project root with the dataset under data/raw (docs/datasets.md). Per share it writes
# WORK/<dataset>-<arch>-w<width>/defended-<share>-<rule>/report.json; benchmarks/own_model/table.py
# turns them into the table of docs/own-model.md. CA is measured on a stratified 20% of the test split
# and ASR on a seeded draw of 2,000 triggered test images: the per-epoch curves evaluate both every
# epoch. SHARES (default "0.05 0.1") and RULES (default "validated fixed") narrow the run.
set -euo pipefail
dataset=$1 arch=$2 width=$3 epochs=$4 work=$5
shares=${SHARES:-0.05 0.1}
rules=${RULES:-validated fixed}
here=$(dirname "$0")
dir=$work/$dataset-$arch-w$width
mkdir -p "$dir"

[ -f "$work/$dataset-train.npz" ] || uv run sequela folders "$dataset" --split train --out "$work/$dataset-train.npz"
[ -f "$work/$dataset-test.npz" ] || uv run sequela folders "$dataset" --split test --out "$work/$dataset-test.npz"
[ -f "$dir/trained/trained.json" ] || uv run python "$here/train_plain.py" --train "$work/$dataset-train.npz" \
    --test "$work/$dataset-test.npz" --arch "$arch" --width "$width" --epochs "$epochs" --out "$dir/trained"
[ -f "$dir/test-20pct.npz" ] || uv run sequela folders "$dataset" --split test --fraction 0.2 --out "$dir/test-20pct.npz"
[ -f "$dir/triggered-2000.npz" ] || uv run python "$here/draw.py" "$dir/trained/triggered.npz" --rows 2000 \
    --out "$dir/triggered-2000.npz"

shape=$(uv run python -c "import json; print(','.join(map(str, json.load(open('$dir/trained/trained.json'))['input_shape'])))")
classes=$(uv run python -c "import json; print(json.load(open('$dir/trained/trained.json'))['num_classes'])")
norm() { uv run python -c "import json; print(','.join(f'{v:.6f}' for v in json.load(open('$dir/trained/normalization.json'))['$1']))"; }
[ -f "$dir/model.safetensors" ] || uv run sequela convert "$dir/trained/weights.pt" --arch "$arch" --width "$width" \
    --num-classes "$classes" --input-shape "$shape" --mean "$(norm mean)" --std "$(norm std)" --out "$dir/model.safetensors"

for share in $shares; do
    [ -f "$dir/clean-$share.npz" ] || uv run sequela folders "$dataset" --split train --fraction "$share" --seed 0 \
        --out "$dir/clean-$share.npz"
    for rule in $rules; do
        out=$dir/defended-$share-$rule
        [ -f "$out/report.json" ] || uv run sequela defend "$dir/model.safetensors" --clean "$dir/clean-$share.npz" \
            --test "$dir/test-20pct.npz" --triggered "$dir/triggered-2000.npz" --target 0 --defenses ft,sft \
            --lr-rule "$rule" --seeds 0,1,2 --out "$out"
    done
done

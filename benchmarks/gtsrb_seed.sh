#!/usr/bin/env bash
# One GTSRB seed (5 attacks x {none, FT, SFT} with sequela) on a CPU, timed stage by stage.
# Run in a fresh clone with GTSRB unpacked under data/raw (docs/datasets.md). Extra -S
# arguments are passed on, e.g. `-S recipe.gtsrb.cpu.cpu_bf16=true` on a CPU with AMX.
#
#     bash benchmarks/gtsrb_seed.sh [--fanout] [-S key=value ...]
#
# Without --fanout: `dvc exp run`, one stage at a time, torch on every core. With --fanout:
# `sequela fanout` with one 1-CPU slot per core, stages side by side (needs the cluster extra).
set -euo pipefail
runner=(uv run dvc exp run)
if [[ "${1:-}" == "--fanout" ]]; then
    shift
    runner=(uv run --extra cluster sequela fanout)
fi
log=gtsrb_seed.stamped.log
start=$(date +%s)
"${runner[@]}" -S 'grid.datasets=[gtsrb]' -S 'grid.seeds=[0]' -S 'grid.defenses=[ft,sft]' \
    -S 'ablation.datasets=[]' -S 'transfer.upstream=[]' -S 'encoder.pretrain=[]' -S defense.clean_fraction=0.05 \
    -S attack.inputaware.mask_epochs=1 -S attack.inputaware.pattern_epochs=2 \
    -S curves.eval_n=1000 "$@" 2>&1 |
    while IFS= read -r line; do echo "$(date +%s) $line"; done | tee "$log"
echo "$(date +%s) done in $(( $(date +%s) - start )) s" >> "$log"
uv run python benchmarks/stage_times.py "$log"

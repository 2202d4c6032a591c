#!/usr/bin/env bash
# The default grid's cold `dvc repro` and its no-op rerun, in a fresh clone of this checkout's HEAD,
# with every line of DVC's log time-stamped; then the time per kind of stage. Run it alone on the
# machine (anything else on the cores shows up in the figures):
#
#     bash benchmarks/default_grid.sh [SCRATCH_DIR]
#
# Prints: cold seconds, no-op seconds, and benchmarks/stage_times.py's table of the log.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=${1:-$(mktemp -d)}
git clone -q "$root" "$scratch/clone"
cd "$scratch/clone"
uv sync -q --locked
log="$scratch/default_grid.stamped.log"
start=$(date +%s.%N)
uv run dvc repro 2>&1 | while IFS= read -r line; do echo "$(date +%s.%N) $line"; done > "$log"
end=$(date +%s.%N)
uv run dvc repro > /dev/null 2>&1  # once, so that uv's own first start is not in the no-op figure
noop_start=$(date +%s.%N)
uv run dvc repro > /dev/null
noop_end=$(date +%s.%N)
echo "commit $(git rev-parse --short HEAD), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
echo "cold dvc repro:  $(echo "$end - $start" | bc) s"
echo "no-op dvc repro: $(echo "$noop_end - $noop_start" | bc) s"
uv run python "$root/benchmarks/stage_times.py" "$log" | tail -n 16

"""The GPU throughput benchmark starts and measures both loops on a CPU (its numbers are meaningless
at smoke size; benchmarks/train_throughput.py is run by hand on a GPU)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_throughput_benchmark_runs_both_loops_on_a_cpu(tmp_path):
    out = tmp_path / "rows.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--smoke",
                             "--device", "cpu", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| per-sample (0 workers) | 32 |" in result.stdout and "| engine | 32 |" in result.stdout
    import json

    rows = json.loads(out.read_text())["rows"]
    assert [r["loop"] for r in rows] == ["per-sample (0 workers)", "engine"] and all(r["img_per_s"] > 0 for r in rows)


def test_stage_times_runs_each_stage_until_the_next_starts_and_sums_by_kind(tmp_path):
    log = tmp_path / "run.stamped.log"
    log.write_text("100 Running stage 'train@gtsrb-badnets-0':\n130 train ... CA 0.95\n"
                   "150 Running stage 'train@gtsrb-lf-0':\n190 Running stage 'defend@gtsrb-lf-0':\n"
                   "not stamped\n200 done in 100 s\n")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "stage_times.py"), str(log)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {line[:40].strip(): int(line[40:].split()[0]) for line in result.stdout.splitlines() if line.strip()}
    assert rows["train@gtsrb-badnets-0"] == 50 and rows["train@gtsrb-lf-0"] == 40
    assert rows["defend@gtsrb-lf-0"] == 10 and rows["train"] == 90 and rows["all stages"] == 100

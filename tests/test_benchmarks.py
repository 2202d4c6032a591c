"""The GPU throughput benchmark starts and measures both loops on a CPU (its numbers are meaningless
at smoke size; benchmarks/train_throughput.py is run by hand on a GPU)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_throughput_benchmark_runs_both_loops_on_a_cpu(tmp_path):
    out = tmp_path / "rows.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "train_throughput.py"),
            "--smoke",
            "--device",
            "cpu",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "| per-sample (0 workers) | 32 |" in result.stdout and "| engine | 32 |" in result.stdout
    import json

    rows = json.loads(out.read_text())["rows"]
    assert [r["loop"] for r in rows] == ["per-sample (0 workers)", "engine"] and all(r["img_per_s"] > 0 for r in rows)


def stage_time_rows(log) -> dict[str, int]:
    """benchmarks/stage_times.py's printed rows, name -> seconds."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "stage_times.py"), str(log)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return {line[:40].strip(): int(line[40:].split()[0]) for line in result.stdout.splitlines() if line.strip()}


def test_stage_times_runs_each_stage_until_the_next_starts_and_sums_by_kind(tmp_path):
    log = tmp_path / "run.stamped.log"
    log.write_text(
        "100 Running stage 'train@gtsrb-badnets-0':\n130 train ... CA 0.95\n"
        "150 Running stage 'train@gtsrb-lf-0':\n190 Running stage 'defend@gtsrb-lf-0':\n"
        "not stamped\n200 done in 100 s\n"
    )
    rows = stage_time_rows(log)
    assert rows["train@gtsrb-badnets-0"] == 50 and rows["train@gtsrb-lf-0"] == 40
    assert rows["defend@gtsrb-lf-0"] == 10 and rows["train"] == 90 and rows["all stages"] == 100


def test_stage_times_reads_the_fanouts_own_stage_times_and_the_wall_span(tmp_path):
    log = tmp_path / "fanout.stamped.log"
    log.write_text(
        "1000 3 stages to check or run on 2 slots (workspace mode)\n"
        "1060 [1 done, 1 running, 1 to start, ~1 min left] train@x-a-0: done in 60 s\n"
        "1070 [2 done, 0 running, 1 to start, ~1 min left] train@x-b-0: done in 70 s\n"
        "1100 [3 done, 0 running, 0 to start, ~0 min left] defend@x-a-0: done in 30 s\n"
    )
    rows = stage_time_rows(log)
    assert rows["train"] == 130 and rows["defend"] == 30 and rows["all stages"] == 160
    assert rows["wall (fanout, stages overlap)"] == 100


def test_the_cuda_slice_runs_stage_scripts_that_exist():
    # it runs on a machine without DVC, so nothing else notices when a stage script is renamed
    import re

    source = (ROOT / "benchmarks" / "cuda_slice.py").read_text()
    scripts = set(re.findall(r'run\(scratch, "(\w+)"', source))
    assert {"prepare", "clean", "train", "defend", "measure"} <= scripts
    assert all((ROOT / "stages" / f"{name}.py").is_file() for name in scripts), scripts

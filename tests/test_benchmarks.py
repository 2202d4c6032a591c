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

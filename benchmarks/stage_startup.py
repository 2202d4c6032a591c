"""What a stage process costs before it does any work: the Python start-up and its imports.

On the 2-core build machine a digits stage's model work is a few seconds, so the fixed cost of each
process decides how long `dvc repro` takes. Run from the project root:

    uv run python benchmarks/stage_startup.py [--repeat 3]

It times, in fresh processes, a bare interpreter, `import torch`, and each stage script's imports
(everything above its `main`), and prints the median of --repeat runs per line. Whether the
environment holds compiled bytecode matters a great deal where PYTHONDONTWRITEBYTECODE is set
(pyproject.toml's [tool.uv] compile-bytecode).
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage_imports(script: Path) -> str:
    """The import statements at the top level of a stage script, as one program."""
    tree = ast.parse(script.read_text())
    return "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))


def timed(code: str, repeat: int) -> float:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'stages'}{os.pathsep}{ROOT / 'src'}"}
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}")
    print(f"{'python -c pass':32s} {timed('pass', args.repeat):6.2f} s")
    print(f"{'import torch':32s} {timed('import torch', args.repeat):6.2f} s")
    for script in sorted((ROOT / "stages").glob("*.py")):
        print(f"{'stages/' + script.name + ' imports':32s} {timed(stage_imports(script), args.repeat):6.2f} s")


if __name__ == "__main__":
    main()

"""Wall time per DVC stage, and per kind of stage, from a timestamped `dvc repro` / `dvc exp run` log,
or from a `sequela fanout` log.

DVC prints "Running stage 'name':" when a stage starts and does not time it, so the log is stamped
line by line as it is written (benchmarks/gtsrb_seed.sh does this) and each stage runs until the next
one starts, or until the final line. Stages run one after another, so the kinds add up to the run.
The fanout prints "<stage>: done in N s" itself; its stages overlap, so there the kinds add up to
slot time, and the run's wall time is the span of the stamped log.

    uv run python benchmarks/stage_times.py run.stamped.log
"""

import argparse
import re
from collections import defaultdict

STAGE = re.compile(r"^(\d+(?:\.\d+)?) Running stage '([^']+)'")
FANOUT = re.compile(r"^\d+(?:\.\d+)? \[[^]]*\] (\S+): done in (\d+) s")


def stamp(line: str) -> float:
    """A line's time stamp: whole seconds (`date +%s`) or with a fraction (`date +%s.%N`)."""
    return float(line.split(" ", 1)[0])


def stage_times(lines: list[str]) -> list[tuple[str, int]]:
    starts = [(m.group(2), float(m.group(1))) for m in map(STAGE.match, lines) if m]
    end = stamp(lines[-1])
    return [(name, (starts[i + 1][1] if i + 1 < len(starts) else end) - t) for i, (name, t) in enumerate(starts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log")
    args = parser.parse_args()
    with open(args.log) as f:
        lines = [line.rstrip("\n") for line in f if re.match(r"^\d+(\.\d+)? ", line)]
    fanned = [(m.group(1), int(m.group(2))) for m in map(FANOUT.match, lines) if m]
    times = fanned or stage_times(lines)
    kinds: dict[str, float] = defaultdict(float)
    for name, seconds in times:
        print(f"{name:40s} {seconds:6.0f} s")
        kinds[name.split("@")[0]] += seconds
    print()
    for kind, seconds in kinds.items():
        print(f"{kind:40s} {seconds:6.0f} s  ({seconds / 60:.1f} min)")
    total = sum(kinds.values())
    print(f"{'all stages':40s} {total:6.0f} s  ({total / 60:.1f} min)")
    if fanned:
        wall = stamp(lines[-1]) - stamp(lines[0])
        print(f"{'wall (fanout, stages overlap)':40s} {wall:6.0f} s  ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()

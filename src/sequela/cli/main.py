"""sequela: the project's command line.

    sequela fanout [...]     run the pipeline's stages in parallel with Ray (fanout.py)
    sequela deps [--check]   each dvc.yaml stage's code deps, from its script's imports (dag.py)
    sequela study FILE       run a named study (studies/<name>.yaml), keep its reports (study.py)
    sequela convert CKPT     a state-dict checkpoint -> a self-describing safetensors model (convert.py)
    sequela defend MODEL     defend a model trained elsewhere, from image folders (defend.py)
    sequela export ...       a grid's backdoored model and its data as a state dict and image folders (export.py)
    sequela folders DATASET  a stratified seeded share of a dataset's split as an image folder or .npz (folders_cmd.py)

Run from the project root (where dvc.yaml is).
"""

from __future__ import annotations

import sys
from pathlib import Path


def deps(argv: list[str]) -> int:
    import argparse

    from sequela.cli import dag

    parser = argparse.ArgumentParser(prog="sequela deps", description=dag.__doc__)
    parser.add_argument("--check", action="store_true", help="list what dvc.yaml lacks or has too much, exit 1 if any")
    parser.add_argument("--write", action="store_true", help="rewrite every stage's code deps in dvc.yaml")
    args = parser.parse_args(argv)
    root = Path.cwd()
    if not (root / "dvc.yaml").is_file():
        print("error: sequela deps: no dvc.yaml here; run it from the project root", file=sys.stderr)
        return 2
    if args.write:
        changed = dag.write(root)
        print(f"dvc.yaml: code deps rewritten for {', '.join(changed)}" if changed else "dvc.yaml: deps unchanged")
        return 0
    if args.check:
        found = dag.problems(root)
        print("\n".join(found) or "every stage declares exactly the code it runs")
        return 1 if found else 0
    for stage, needed in dag.required(root).items():
        print(f"{stage}:\n" + "".join(f"  - {d}\n" for d in needed))
    return 0


def fanout(argv: list[str]) -> int:
    from sequela.cli.fanout import main as run

    return run(argv)


def study(argv: list[str]) -> int:
    from sequela.cli.study import main as run

    return run(argv)


def convert(argv: list[str]) -> int:
    from sequela.cli.convert import main as run

    return run(argv)


def defend(argv: list[str]) -> int:
    from sequela.cli.defend import main as run

    return run(argv)


def export(argv: list[str]) -> int:
    from sequela.cli.export import main as run

    return run(argv)


def folders(argv: list[str]) -> int:
    from sequela.cli.folders_cmd import main as run

    return run(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {
        "deps": deps,
        "fanout": fanout,
        "study": study,
        "convert": convert,
        "defend": defend,
        "export": export,
        "folders": folders,
    }
    if not argv or argv[0] not in commands:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())

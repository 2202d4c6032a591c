"""check: every section of params.yaml, before any other stage runs (sequela/validate.py).

prepare@ and pretrain@, the first stages of every path through the DAG, depend on this stage's
output, so `dvc repro` stops on a bad value in its first seconds, before any training, whichever
stage the value belongs to. Keys that nothing reads (a typo such as `defence.epochs`) get a one-line
warning. The output holds nothing that changes with the params, so a stage downstream never reruns
because this one did.
"""

from sequela.pipeline.io import atomic_write_text
from sequela.validate import validate
from stage import open_stage, run_main

OUT = "data/params-checked"


def main() -> None:
    stage = open_stage(__doc__, device=False)
    for warning in validate(stage.params):
        print(f"warning: {warning}")
    atomic_write_text("params.yaml passed every check\n", OUT)


if __name__ == "__main__":
    run_main(main)

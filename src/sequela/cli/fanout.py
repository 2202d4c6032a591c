"""Run the pipeline's stages in parallel with Ray: N slots on one machine, or the workers of a cluster.

DVC runs one stage at a time (iterative/dvc#755). Here Ray does the scheduling and DVC the
bookkeeping. Every stage that may need to run becomes one Ray task whose arguments are its upstream
stages' tasks, so Ray starts it only when they have finished; each task asks Ray for one slot
(`--cpus-per-slot` CPUs, or GPUs, which Ray pins through CUDA_VISIBLE_DEVICES). What a task runs:

- **workspace mode** (one machine, the default): `dvc --wait-for-lock repro -s STAGE` in this
  workspace. Since DVC 3.61, single-stage runs in one workspace take their own locks, so they can run
  side by side, and each writes its entry of `dvc.lock`.
- **clone mode** (`--clone URL`, a cluster): a fresh clone of URL at this workspace's commit in the
  worker's scratch space, `dvc repro --pull STAGE` there (its upstream stages are restored from the
  run-cache their own tasks pushed, so nothing upstream is recomputed), then `dvc push --run-cache`.
  The coordinator ends with `dvc repro --pull`, which restores every stage and computes none.

A killed run is rerun as it is: DVC skips every stage whose outputs are already recorded. On the
first failure no further stage starts; those running finish, and the failed stage is named with the
last lines of its log. With `--keep-going`, every stage that does not depend on a failed one still
runs (as `dvc repro --keep-going` does); the failed stages and the stages left out because of them
are listed at the end, and the exit status is 1.

    uv sync --extra cluster
    uv run sequela fanout --slots 2                       # two 1-CPU slots on this machine
    uv run sequela fanout --slots 2 -S 'grid.seeds=[0]'   # after setting params as dvc exp run -S does
    uv run sequela fanout --slots 2 --keep-going          # a failure stops only what depends on it
    uv run sequela fanout --slots 8 --gpus-per-slot 1     # one GPU per stage
    uv run sequela fanout --address auto --clone git@host:me/sequela.git   # a Ray cluster
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

LOG_TAIL = 20  # lines of a failed stage's log shown


@dataclass
class Outcome:
    stage: str
    status: str  # "done", "failed" or "skipped" (not started after a failure)
    seconds: float = 0.0
    log_tail: str = ""


def dvc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def slot_env(cpus: int) -> dict[str, str]:
    """The environment of a stage in a slot of `cpus` CPUs: torch's thread pools and the stage's own
    worker processes (sequela/workers.py) keep within the slot instead of each taking every core."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SEQUELA_CPUS"):
        env[name] = str(cpus)
    # The venv's python first on PATH: stage commands say `python`.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def with_code_of(env: dict[str, str], root: Path) -> dict[str, str]:
    """`env` with root/src first on PYTHONPATH: a stage imports the `sequela` of the checkout it runs
    in. Without it, a clone's stages import whatever `sequela` the interpreter has installed (an
    editable install points at the coordinator's own checkout), not the commit the clone holds."""
    paths = [str(root / "src"), env.get("PYTHONPATH", "")]
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def run_logged(cmds: list[list[str]], cwd: Path, env: dict[str, str]) -> tuple[bool, str]:
    """Run the commands in turn, stopping at the first that fails; returns (ok, combined log)."""
    log = []
    for cmd in cmds:
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        log += [f"$ {' '.join(cmd)}", result.stdout, result.stderr]
        if result.returncode != 0:
            return False, "\n".join(log)
    return True, "\n".join(log)


def run_dvc_stage(stage: str, workspace: str, clone: str | None, remote: str | None, commit: str, cpus: int) -> Outcome:
    """One stage, in this workspace or in a fresh clone at `commit` (see the module docstring)."""
    start = time.perf_counter()
    env = slot_env(cpus)
    if clone is None:
        ok, log = run_logged(
            [dvc_command("--wait-for-lock", "repro", "-s", stage)], Path(workspace), with_code_of(env, Path(workspace))
        )
    else:
        scratch = Path(tempfile.mkdtemp(prefix="sequela-"))
        try:
            ok, log = run_logged([["git", "clone", "--quiet", clone, str(scratch)]], scratch.parent, env)
            if ok:
                steps = [["git", "checkout", "--quiet", commit]]
                if remote:
                    steps.append(dvc_command("remote", "add", "--local", "--default", "--force", "fanout", remote))
                steps += [dvc_command("repro", "--pull", stage), dvc_command("push", "--run-cache")]
                ok, more = run_logged(steps, scratch, with_code_of(env, scratch))
                log += "\n" + more
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    lines = [line for line in log.splitlines() if line.strip()]
    return Outcome(
        stage, "done" if ok else "failed", time.perf_counter() - start, "" if ok else "\n".join(lines[-LOG_TAIL:])
    )


def stages_to_run(repo, targets: list[str]) -> list[tuple[str, list[str]]]:
    """(stage, the stages it waits for) for every stage that may have to run, upstream first.

    That is each stage `dvc status` reports, and every stage downstream of one: their inputs
    change when it reruns. A stage that turns out unchanged costs one quick `dvc repro -s`."""
    import networkx as nx

    graph = repo.index.graph  # an edge runs from a stage to a stage whose outputs it reads
    by_name = {stage.addressing: stage for stage in graph.nodes}
    for name in targets:
        if name not in by_name:
            raise SystemExit(f"error: --targets: {name!r} is not a stage of dvc.yaml")
    wanted = set(graph.nodes)
    if targets:
        wanted = set().union(*({by_name[n], *nx.descendants(graph, by_name[n])} for n in targets))
    stale = {by_name[name] for name in repo.status([s.addressing for s in wanted]) if name in by_name}
    pending = set(stale).union(*(nx.ancestors(graph, s) for s in stale)) & wanted
    order = [s for s in reversed(list(nx.topological_sort(graph))) if s in pending]
    return [(s.addressing, sorted(u.addressing for u in graph.successors(s) if u in pending)) for s in order]


def kept_in_git(repo) -> set[str]:
    """Stages with an output DVC does not cache (`cache: false`, the report's git-tracked summary,
    tables and figures), and every stage downstream of one. DVC keeps no run-cache entry for them,
    so a worker's result could not come back to the coordinator: in clone mode the coordinator
    builds them itself, from the restored cells, in its closing `dvc repro --pull`."""
    import networkx as nx

    graph = repo.index.graph
    uncached = [s for s in graph.nodes if any(not out.use_cache for out in s.outs)]
    return {s.addressing for s in set(uncached).union(*(nx.ancestors(graph, s) for s in uncached))}


def default_remote_url(repo) -> str | None:
    """The workspace's default DVC remote, as an absolute path or URL that a clone elsewhere can use."""
    name = repo.config["core"].get("remote")
    return repo.config["remote"][name]["url"] if name else None


def progress(done: int, running: int, left: int, spent: list[float], slots: int) -> str:
    eta = ""
    if spent and left + running:
        eta = f", ~{sum(spent) / len(spent) * (left + running) / max(slots, 1) / 60:.0f} min left"
    return f"[{done} done, {running} running, {left} to start{eta}]"


def set_params(path: Path, overrides: list[str]) -> None:
    """Write `overrides` (DVC's `-S` syntax, through DVC's own parser) into params.yaml; a bad one gets
    one line and leaves the file as it was."""
    from dvc.exceptions import DvcException
    from dvc.utils.hydra import apply_overrides

    before = path.read_text() if path.exists() else None
    try:
        apply_overrides(path, overrides)
    except DvcException as err:
        if before is not None:
            path.write_text(before)
        cause = str(err.__cause__ or err).strip().splitlines()[0]  # hydra's reason names the key
        raise SystemExit(
            f"error: -S {' -S '.join(overrides)} is not allowed: {cause}; allowed: keys that "
            "params.yaml has, with values of their kind"
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sequela fanout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--slots", type=int, default=None, help="stages at once on this machine (default: one per --cpus-per-slot CPUs)"
    )
    parser.add_argument("--cpus-per-slot", type=int, default=1)
    parser.add_argument("--gpus-per-slot", type=float, default=0, help="fractions share a GPU between stages")
    parser.add_argument("--address", default=None, help="a running Ray cluster (`auto` inside one)")
    parser.add_argument("--clone", default=None, help="git URL the workers clone (cluster mode)")
    parser.add_argument(
        "--remote",
        default=None,
        help="DVC remote URL the workers push to and pull from (default: this workspace's "
        "default remote); it becomes this workspace's default (.dvc/config.local)",
    )
    parser.add_argument("--targets", nargs="*", default=[], help="only these stages and what they need")
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="after a failure, still run every stage that does not depend on a failed one",
    )
    parser.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a value in params.yaml first, as `dvc exp run -S` does (workspace mode only)",
    )
    args = parser.parse_args(argv)
    for key in ("slots", "cpus_per_slot"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise SystemExit(f"error: --{key.replace('_', '-')} = {value} is not allowed; allowed: an integer >= 1")
    if args.gpus_per_slot < 0:
        raise SystemExit(f"error: --gpus-per-slot = {args.gpus_per_slot} is not allowed; allowed: a number >= 0")

    if args.set_param:
        if args.clone:  # the workers clone the commit, which does not hold the edit
            raise SystemExit("error: -S is not allowed with --clone; commit the params to the clone URL instead")
        set_params(Path("params.yaml"), args.set_param)

    import ray
    from dvc.repo import Repo

    workspace = Path.cwd()
    repo = Repo(str(workspace))
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=workspace, capture_output=True, text=True, check=True
    ).stdout.strip()
    if args.clone:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=workspace,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if dirty:  # the workers would clone the commit, without these edits
            raise SystemExit(
                "error: --clone: the workspace has uncommitted changes; commit them and push "
                f"{commit[:8]} to the clone URL first:\n{dirty}"
            )
    remote = args.remote or (default_remote_url(repo) if args.clone else None)
    plan = stages_to_run(repo, args.targets)
    local = kept_in_git(repo) & {stage for stage, _ in plan} if args.clone else set()
    repo.close()
    if local:
        plan = [(stage, [u for u in upstream if u not in local]) for stage, upstream in plan if stage not in local]
        print(
            f"left to this workspace's closing dvc repro --pull (outputs kept in git, not in the run-cache): "
            f"{', '.join(sorted(local))}",
            flush=True,
        )
    if not plan and not local:
        print("every stage is up to date")
        return 0

    # Ray runs its workers at nice 15 by default, so a stage's processes lose the CPU to anything
    # else on the machine (on a busy 2-core box `import torch` took 16 s instead of 2). Stages are the
    # work here; on a cluster, start Ray with the same variable (docs/scaling.md).
    os.environ.setdefault("RAY_worker_niceness", "0")
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        slots = args.slots or max(1, (os.cpu_count() or 1) // args.cpus_per_slot)
        gpus = int(-(-slots * args.gpus_per_slot // 1)) if args.gpus_per_slot else 0
        ray.init(num_cpus=slots * args.cpus_per_slot, num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    slots = int(ray.cluster_resources().get("CPU", 1)) // args.cpus_per_slot
    gate = ray.remote(num_cpus=0)(Gate).remote()
    task = ray.remote(gated).options(num_cpus=args.cpus_per_slot, num_gpus=args.gpus_per_slot, max_retries=0)
    refs = {}
    for stage, upstream in plan:  # upstream first, so every upstream ref exists
        refs[stage] = task.remote(
            gate, stage, str(workspace), args.clone, remote, commit, args.cpus_per_slot, *(refs[u] for u in upstream)
        )
    print(
        f"{len(plan)} stages to check or run on {slots} slots ({'clone' if args.clone else 'workspace'} mode)",
        flush=True,
    )

    waiting, spent, failed, skipped, done = list(refs.values()), [], [], [], 0
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        outcome: Outcome = ray.get(ready[0])
        if outcome.status == "failed":
            failed.append(outcome)
            if not args.keep_going:
                ray.get(gate.close.remote())  # nothing new starts; what runs finishes
        elif outcome.status == "skipped":
            skipped.append(outcome.stage)
        elif outcome.status == "done":
            done += 1
            spent.append(outcome.seconds)
        running = ray.get(gate.running.remote())
        print(
            f"{progress(done, running, len(waiting) - running, spent, slots)} {outcome.stage}: "
            f"{outcome.status}" + (f" in {outcome.seconds:.0f} s" if outcome.status != "skipped" else ""),
            flush=True,
        )
    ray.shutdown()
    if failed:
        for outcome in failed:
            print(f"error: stage {outcome.stage} failed; the end of its log:\n{outcome.log_tail}", file=sys.stderr)
        # One summary after the logs, so the end of the output says what is missing and why.
        print(f"{len(failed)} stage(s) failed: {', '.join(o.stage for o in failed)}", file=sys.stderr)
        if skipped:
            print(
                f"not run, downstream of a failure{'' if args.keep_going else ' or after it'}: {', '.join(skipped)}",
                file=sys.stderr,
            )
        return 1
    if args.clone:  # gather every result here: restored from the run-cache, nothing recomputed
        if args.remote:  # the workers pushed there; this workspace pulls from it from now on
            subprocess.run(
                dvc_command("remote", "add", "--local", "--default", "--force", "fanout", args.remote),
                cwd=workspace,
                check=True,
                capture_output=True,
            )
        print("restoring every stage here from the run-cache: dvc repro --pull", flush=True)
        result = subprocess.run(
            dvc_command("repro", "--pull"),
            cwd=workspace,
            env=with_code_of(slot_env(os.cpu_count() or 1), workspace),
            capture_output=True,
            text=True,
        )
        print(result.stdout, result.stderr, sep="\n", flush=True)
        ran = [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage '")]
        if any(stage not in local for stage in ran):
            print(
                "warning: the coordinator recomputed a stage (above): its run-cache entry was not found",
                file=sys.stderr,
            )
        return result.returncode
    return 0


def gated(
    gate, stage: str, workspace: str, clone: str | None, remote: str | None, commit: str, cpus: int, *upstream: Outcome
) -> Outcome:
    """The Ray task: run `stage` unless one it waits for did not finish, or a stage failed already and
    the gate is closed (it stays open with --keep-going)."""
    import ray

    if any(u.status != "done" for u in upstream) or not ray.get(gate.start.remote()):
        return Outcome(stage, "skipped")
    try:
        return run_dvc_stage(stage, workspace, clone, remote, commit, cpus)
    finally:
        ray.get(gate.finish.remote())


class Gate:
    """Shared by the tasks: closed after the first failure, and counts the stages running."""

    def __init__(self):
        self.open, self.active = True, 0

    def start(self) -> bool:
        if self.open:
            self.active += 1
        return self.open

    def finish(self) -> None:
        self.active -= 1

    def close(self) -> None:
        self.open = False

    def running(self) -> int:
        return self.active


if __name__ == "__main__":
    sys.exit(main())

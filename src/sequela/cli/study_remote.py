"""Where a study keeps its finished stages, so that a stop costs only the stage that was running.

`sequela study` names a DVC remote `study` in `.dvc/config.local` (never committed): the folder or
URL given with --remote, else `sequela/dvc-remote` under the user's cache directory
($XDG_CACHE_HOME, or ~/.cache). Before the run it fetches the remote's run-cache and the outputs its
entries name into the local cache, so every stage the remote holds is restored, not recomputed.
While the run goes on, a thread watches the run-cache (`.dvc/cache/runs`) and, whenever a stage has
added an entry, pushes the run-cache and the outputs its entries name; once more when the run ends,
however it ends. A stage is therefore on the remote within `every` seconds of its end, and a rerun of
the same command, in this clone or a fresh one on any machine that reaches the remote, computes only
what is missing.

`dvc push --run-cache` alone would not do: it sends the run-cache's entries but only the outputs of
the workspace's dvc.lock, and a study's outputs live in its temporary experiment copy. So `sync`
asks DVC for the objects every entry names (`stage_cache.get_used_objs`, as `dvc pull --run-cache`
does for its own entries) and moves them with DVC's own transfer, in a child process
(`python -m sequela.cli.study_remote push|restore ROOT`) so that DVC's state stays out of the study's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

NAME = "study"


def default_url() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(cache) / "sequela" / "dvc-remote")


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)


def configure(root: Path, url: str | None) -> str:
    """Name the remote `study` in .dvc/config.local; a local folder is created. Returns its URL."""
    url = url or default_url()
    if "://" not in url:
        Path(url).mkdir(parents=True, exist_ok=True)
        url = str(Path(url).resolve())
    done = dvc(root, "remote", "add", "--local", "--force", NAME, url)
    if done.returncode != 0:
        raise RuntimeError(f"dvc remote add {NAME} {url}: {done.stderr.strip()}")
    return url


def sync(root: Path, direction: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sequela.cli.study_remote", direction, str(root)], capture_output=True, text=True
    )


def restore(root: Path) -> None:
    """Fetch what the remote holds (run-cache and the outputs it names) into the local cache."""
    done = sync(root, "restore")
    if done.returncode != 0:
        raise RuntimeError(f"restoring from the remote {NAME}: {last_line(done)}")


def last_line(done: subprocess.CompletedProcess) -> str:
    text = done.stderr.strip()
    return text.splitlines()[-1] if text else f"exit {done.returncode}"


def entries(repo) -> list[tuple[str, str]]:
    """Every (key, value) of the local run-cache, as DVC's stage cache names them."""
    folder = Path(repo.stage_cache.cache_dir)
    return [(path.parent.name, path.name) for path in sorted(folder.glob("*/*/*")) if path.is_file()]


def transfer(root: Path, direction: str) -> None:
    """push: the run-cache, then every object its entries name; restore: the same, the other way."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo, repo.lock:
        if direction == "push":
            repo.stage_cache.push(NAME)
        else:
            repo.stage_cache.pull(NAME)
        # An object missing on the sending side is left out of the transfer: a stage whose outputs
        # are not all restored is recomputed by DVC, never taken half.
        for _, objs in repo.stage_cache.get_used_objs(entries(repo), remote=NAME).items():
            if direction == "push":
                repo.cloud.push(objs, remote=NAME)
            else:
                repo.cloud.pull(objs, remote=NAME)


def runs(root: Path) -> int:
    """The number of run-cache entries: one more each time a stage finishes with a new signature."""
    folder = root / ".dvc" / "cache" / "runs"
    return sum(len(files) for _, _, files in os.walk(folder)) if folder.is_dir() else 0


class Keeper:
    """Pushes the run-cache whenever it grows, every `every` seconds at most, until stopped; `stop`
    pushes a last time and returns the failures' messages (a failed push is retried at the next
    check, and never stops the run)."""

    def __init__(self, root: Path, every: float):
        self.root, self.every = root, every
        self.stopped = threading.Event()
        self.failures: list[str] = []
        self.pushed = runs(root)
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def __enter__(self) -> Keeper:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()
        self.push()

    def watch(self) -> None:
        while not self.stopped.wait(self.every):
            if runs(self.root) != self.pushed:
                self.push()

    def push(self) -> None:
        count = runs(self.root)
        done = sync(self.root, "push")
        if done.returncode == 0:
            self.pushed = count
        else:
            self.failures.append(last_line(done))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("push", "restore"):
        sys.exit("usage: python -m sequela.cli.study_remote push|restore ROOT")
    transfer(Path(sys.argv[2]), sys.argv[1])

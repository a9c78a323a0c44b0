"""One pipeline run per DVC project at a time, whichever driver started it: `dvc repro` or the flow.

The two drivers must see each other for the whole of a run, and the second must refuse before it
changes anything, naming the first. The record they share is DVC's own, in ``.dvc/tmp``:

- ``lock``, the repository lock. `dvc repro` holds it between stages but lets it go while a stage's
  command runs (so that the command may call DVC itself): a flow that checked only this lock found
  it free for most of a repro, and trained beside it.
- ``rwlock``, a JSON file of read locks on paths and write locks on paths, each with the pid and the
  command line of its holder. A repro takes the read locks of a stage's deps and the write locks of
  its outs while it reproduces the stage, command included, and before DVC decides whether the
  stage changed, restores it from the run cache or deletes its outs; `dvc checkout`, `dvc commit`
  and `dvc status` take them too. A conflicting lock is refused with "'<path>' is busy, it is being
  blocked by: (PID n): <command>". An entry whose pid no longer exists is no holder: DVC drops it
  when it meets it, so a killed run blocks nothing.

So a flow takes the repository lock (refused, naming its holder, while a repro is between stages or
another DVC command runs), then, under it, write locks on every path the pipeline writes (refused,
naming the repro, while one of its stages runs: the stage's outs lie inside those paths), then lets
the repository lock go, as a repro does while a command runs. A `dvc repro` started meanwhile meets
the flow's write locks at its first stage and refuses, naming the flow, before it touches a file
or dvc.lock. (Holding the repository lock for the whole flow instead made a repro fail with DVC's
"Unable to acquire lock", which names no one.) The flow takes the repository lock back to record
its outputs in dvc.lock.

A lock file of ftlab's own, checked by the stage commands that dvc.yaml runs, would come too late:
DVC restores a stage from its run cache, or deletes its outs, before it starts the command.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ftlab.core.config import DataConfig, PromoteConfig, ReportConfig, TrainConfig

if TYPE_CHECKING:
    from dvc.repo import Repo

log = logging.getLogger(__name__)

WAIT = "wait until it ends (a second run would train the same cells into the same files)"


class ProjectBusy(RuntimeError):
    """Another run holds the project; the message names it (pid and command line)."""


class Sections(Protocol):
    """The sections that say where a pipeline run writes (any ``Config`` has them)."""

    @property
    def data(self) -> DataConfig: ...

    @property
    def train(self) -> TrainConfig: ...

    @property
    def report(self) -> ReportConfig: ...

    @property
    def promote(self) -> PromoteConfig: ...


def pipeline_paths(cfg: Sections) -> list[Path]:
    """Every path a pipeline run writes: each dvc.yaml stage's outs lie inside one of them."""
    paths = [cfg.data.prepared_dir, cfg.train.output_dir, cfg.report.dir, cfg.promote.dir]
    return paths + ([cfg.train.checkpoint_dir] if cfg.train.checkpoint_dir else [])


def in_dvc_project() -> bool:
    return Path("dvc.yaml").is_file() and Path(".dvc").is_dir()


class Claim:
    """A flow's hold on the project (the DVC repository at the working directory)."""

    def __init__(self, repo: Repo, locks: ExitStack) -> None:
        self.repo = repo
        self._locks = locks

    @contextmanager
    def recording(self, patience_s: float = 600.0) -> Iterator[Repo]:
        """The repository lock again, then the write locks let go under it: what `dvc commit` needs
        (it takes write locks of its own on the outs), while no repro can start a stage. Waits while
        another DVC command holds the lock (a repro on its way to refusing lets it go in seconds)."""
        from dvc.lock import LockError
        from dvc.repo import lock_repo

        deadline = time.monotonic() + patience_s
        with ExitStack() as held:
            while True:
                try:
                    held.enter_context(lock_repo(self.repo))  # DVC's lock retries for 3 s itself
                    break
                except LockError:
                    if time.monotonic() > deadline:
                        raise ProjectBusy(f"dvc.lock not updated: {holder(self.repo)} held DVC's repository lock "
                                          f"for {patience_s:.0f} s; run `dvc commit` once it has ended") from None
            self._locks.close()
            yield self.repo


@contextmanager
def project_claim(writes: list[Path], who: str) -> Iterator[Claim | None]:
    """Hold the project for a run that writes ``writes`` (None outside a DVC project), recorded in
    DVC's rwlock as ``who``; raises ProjectBusy naming the run that holds it."""
    if not in_dvc_project():
        yield None
        return
    from dvc.lock import LockError
    from dvc.repo import Repo, lock_repo

    with Repo(".") as repo, ExitStack() as locks:
        try:
            with lock_repo(repo):
                try:
                    locks.enter_context(_write_locks(repo, who, writes))
                except LockError as e:
                    raise ProjectBusy(f"another run holds this project: {_blockers(str(e))}; {WAIT}") from None
        except LockError:  # the repository lock itself
            raise ProjectBusy(f"another run holds this project: {holder(repo)}; {WAIT}") from None
        yield Claim(repo, locks)


def refuse_if_busy(writes: list[Path]) -> None:
    """Raise ProjectBusy now, when another run holds the project, instead of after the seconds a
    flow takes to start (its own hold, taken then, is the one that counts)."""
    with project_claim(writes, "ftlab pipeline (checking that the project is free)"):
        pass


@contextmanager
def _write_locks(repo: Repo, who: str, writes: list[Path]) -> Iterator[None]:
    """DVC's write locks on ``writes`` as ``who``. Someone who deleted the rwlock file meanwhile (as
    DVC's refusal suggests when it believes a holder dead) has released them already: not an error."""
    from dvc.rwlock import rwlock

    paths = sorted({os.path.abspath(p) for p in writes})
    locks = rwlock(repo.tmp_dir, repo.fs, who, [], paths, repo.config["core"].get("hardlink_lock", False))
    locks.__enter__()
    try:
        yield
    finally:
        try:
            locks.__exit__(None, None, None)
        except AssertionError:
            log.warning("this run's locks in %s/rwlock were removed by another process", repo.tmp_dir)


def _blockers(message: str) -> str:
    """The holders named in DVC's rwlock refusal ("(PID 123): dvc repro"), or the whole message."""
    found = [f"process {pid} ({cmd.strip()[:200]})" for pid, cmd in re.findall(r"\(PID (\d+)\): (.*)", message)]
    return ", ".join(found) or " ".join(message.split())


def holder(repo: Repo) -> str:
    """The process that holds DVC's repository lock file (zc.lockfile writes its pid there)."""
    import psutil

    lockfile = Path(repo.tmp_dir) / "lock"
    try:
        pid = int(lockfile.read_text().split()[0])
        return f"process {pid} ({' '.join(psutil.Process(pid).cmdline())[:200]})"
    except (OSError, ValueError, IndexError, psutil.Error):
        return f"the process holding {lockfile}"

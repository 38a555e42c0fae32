"""Distributors: ``run(fn, tasks, bar) -> results`` on a local process pool or on Ray.

Both are context managers whose value is called the same way, so swapping one for the other
is a one-word change (``--distributor``). ``fn(task, tick)`` runs in a worker and calls
``tick(n)`` as it finishes items; the parent's progress ``bar`` moves by items, never past its
total (a re-run task reports its items again).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from .plan import ShardTask
from .worker import _init_worker, _started


class BuildStopped(RuntimeError):
    """Workers kept dying; committed shards are kept and a re-run resumes."""


DISTRIBUTORS = ("local", "ray")
INFLIGHT_PREFIX = "s2pdata-inflight-"  # + the parent's pid + "-": a local pool's in-flight key slots, in the temp dir
MAX_UNEXPLAINED_DEATHS = 3  # worker deaths per run that no in-flight key explains, before giving up


def make_runner(distributor: str, workers: int, ray_address: str | None = None, warm: tuple | None = None):
    """The runner for ``distributor`` (one of ``DISTRIBUTORS``), to be entered with ``with``.

    Parameters
    ----------
    distributor : str
        ``"local"`` (a process pool on this machine) or ``"ray"``.
    workers : int
        Worker processes (local), or CPUs of a Ray started here.
    ray_address : str or None
        An existing Ray cluster to join; None starts a local Ray.
    warm : (url, storage_options) or None
        Where the local workers will write: each connects to that store as it starts, while this
        process lists and plans (the first request of a process costs 0.1-0.4 s of client set-up).
    """
    check_distributor(distributor)
    return RayRunner(workers, ray_address) if distributor == "ray" else LocalRunner(workers, warm)


def remove_dead_inflight(tmp: str) -> list[str]:
    """Remove the in-flight folders in ``tmp`` whose build process is gone (a SIGKILL-ed parent's leftovers).

    A folder is removed only when the pid in its name no longer exists; one without a pid, or of a
    live process (or of another user's), is kept. Returns the folders removed.
    """
    removed = []
    for name in sorted(os.listdir(tmp)):
        pid = name[len(INFLIGHT_PREFIX) :].split("-", 1)[0] if name.startswith(INFLIGHT_PREFIX) else ""
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def check_distributor(distributor: str) -> None:
    """Raise ``ValueError`` unless ``distributor`` is one of ``DISTRIBUTORS``."""
    if distributor not in DISTRIBUTORS:
        raise ValueError(f"distributor must be one of {DISTRIBUTORS}, got {distributor!r}")


@dataclass(frozen=True)
class Attempt:
    """What one round of submissions to a local pool gave."""

    done: dict[int, object]  # task index -> result, for each task that finished
    broke: bool  # a worker died, so the pool is unusable and the unfinished tasks must run again
    in_flight: frozenset[str] = frozenset()  # keys the workers were on when it broke (may be none)


def _excluding(task, keys):
    """``task`` with those of ``keys`` that are among its items marked as crashed."""
    hit = tuple(sorted(k for k in keys if k not in task.crashed and any(it.key == k for it in task.items)))
    return dataclasses.replace(task, crashed=task.crashed + hit) if hit else task


class LocalRunner:
    """``run(fn, tasks, bar) -> results`` on a spawned process pool (in-process for one worker).

    ``tick(n)`` reaches the parent's progress bar through a queue. One pool serves every phase of
    a build; its workers start on ``__enter__``, while the parent lists the source and plans.

    A file that kills its worker (a decoder's segfault, the kernel's OOM killer) does not stop the
    build. Each worker keeps the key it is on in a small file; when the pool breaks, the tasks
    that had a key in flight become suspects and run again one at a time in a single-worker pool,
    so a second death names its item for certain. That item joins ``killers``: it is excluded
    (``task.crashed``; a ``worker-crashed`` reject) from its task, which re-runs, and from every
    later task; every other task simply runs again. A death that no in-flight key explains counts
    in ``unexplained_deaths``; more than ``MAX_UNEXPLAINED_DEATHS`` in one run stop the build.
    (With one worker the build runs in this process and has no such protection.)
    """

    def __init__(self, workers: int, warm: tuple | None = None):
        self.workers, self.warm = workers, warm
        self.pool = None  # the pool that serves the build; replaced when a death breaks it
        self.killers: set[str] = set()  # keys known to kill a worker
        self.unexplained_deaths = 0  # in the current run
        self._ctx = self._queue = self._inflight_dir = None

    def __enter__(self) -> LocalRunner:
        if self.workers <= 1:
            from .._jit import worker_setup

            worker_setup()
            return self
        import multiprocessing as mp
        import tempfile

        self._ctx = mp.get_context("spawn")
        self._queue = self._ctx.Queue()
        remove_dead_inflight(tempfile.gettempdir())
        self._inflight_dir = tempfile.mkdtemp(prefix=f"{INFLIGHT_PREFIX}{os.getpid()}-")
        self.pool = self._new_pool(self.workers)
        return self

    def __exit__(self, *exc) -> bool:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            shutil.rmtree(self._inflight_dir, ignore_errors=True)
        return False

    def __call__(self, fn, tasks, bar) -> list:
        if self.pool is None:
            return [fn(t, bar.update) for t in tasks]
        with self._forwarding(bar):
            return self._run(fn, list(tasks))

    def _run(self, fn, tasks) -> list:
        """Shared rounds until every task is done; after a death, its suspects alone first."""
        tasks = [_excluding(t, self.killers) for t in tasks]
        results: dict[int, object] = {}
        suspects: list[int] = []  # task indices to run alone, first first
        self.unexplained_deaths = 0
        while len(results) < len(tasks):
            if suspects:
                i = suspects[0]
                attempt = self._alone_round(fn, tasks[i], i)
                results.update(attempt.done)
                if attempt.in_flight:  # its only worker died on these keys
                    self.killers.update(attempt.in_flight)
                    tasks[i] = _excluding(tasks[i], attempt.in_flight)
                elif attempt.broke:
                    self.unexplained_deaths += 1  # died between items: nothing to exclude
                if not attempt.broke:
                    suspects.pop(0)
            else:
                todo = [i for i in range(len(tasks)) if i not in results]
                attempt = self._shared_round(fn, tasks, todo)
                results.update(attempt.done)
                suspects = [
                    i for i in todo if i not in results and any(it.key in attempt.in_flight for it in tasks[i].items)
                ]
                self.unexplained_deaths += attempt.broke and not suspects
            if self.unexplained_deaths > MAX_UNEXPLAINED_DEATHS:
                raise BuildStopped(
                    "build workers keep dying outside any one file (out of memory? see the "
                    "system log); committed shards are kept: re-run to resume"
                )
        return [results[i] for i in range(len(tasks))]

    def _shared_round(self, fn, tasks, todo: list[int]) -> Attempt:
        """The tasks ``todo`` on the shared pool, which is replaced if a worker died."""
        attempt = self._attempt(self.pool, fn, tasks, todo)
        if attempt.broke:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool(self.workers)
        return attempt

    def _alone_round(self, fn, task, index: int) -> Attempt:
        """One suspect task alone in a fresh single-worker pool: a death now names its key."""
        alone = self._new_pool(1)
        try:
            return self._attempt(alone, fn, {index: task}, [index])
        finally:
            alone.shutdown(wait=False, cancel_futures=True)

    def _new_pool(self, n: int):
        """A pool of ``n`` spawned workers, all started now rather than on first use."""
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(
            n,
            mp_context=self._ctx,
            initializer=_init_worker,
            initargs=(self._queue, self._inflight_dir, os.getpid(), self.warm),
        )
        for _ in range(n):
            pool.submit(_started)
        return pool

    def _attempt(self, pool, fn, tasks, indices: list[int]) -> Attempt:
        """Submit ``tasks[i]`` for each of ``indices`` and wait for all, or for the pool to break."""
        from concurrent.futures import FIRST_EXCEPTION, wait
        from concurrent.futures.process import BrokenProcessPool

        futures = {pool.submit(fn, tasks[i]): i for i in indices}
        wait(futures, return_when=FIRST_EXCEPTION)
        done, broke = {}, False
        for f, i in futures.items():
            exc = f.exception() if f.done() else None
            if f.done() and exc is None:
                done[i] = f.result()
            elif isinstance(exc, BrokenProcessPool):
                broke = True
            elif exc is not None:
                for g in futures:
                    g.cancel()
                raise exc
        return Attempt(done, broke, self._take_in_flight() if broke else frozenset())

    def _take_in_flight(self) -> frozenset[str]:
        """The keys the workers were on, each slot then blanked (live workers keep writing to theirs)."""
        keys = set()
        for name in os.listdir(self._inflight_dir):
            with open(os.path.join(self._inflight_dir, name), "r+b") as f:
                keys.add(f.read().decode(errors="replace").strip())
                f.truncate(0)
        return frozenset(keys - {""})

    @contextmanager
    def _forwarding(self, bar):
        """Move ``bar`` by the counts workers put on the queue, until the run ends."""

        def drain():
            """Runs in a thread: every count the workers send, until the end marker."""
            for n in iter(self._queue.get, None):  # None: the parent's own end marker
                _advance(bar, n)

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._queue.put(None)
            thread.join()
            while not self._queue.empty():
                _advance(bar, self._queue.get())


def _ray_call(fn, task, tally):
    """A Ray task's body: ``fn(task, tick)`` with ticks reported to ``tally`` before it returns."""
    import ray

    from .._jit import worker_setup

    worker_setup()
    # waiting for each report (a millisecond, a few times a second) means a task's items are all
    # counted by the time its result is ready, so the driver's bar ends at its total by counting
    return fn(task, tick=(lambda n: ray.get(tally.add.remote(n))) if tally is not None else (lambda n: None))


def _describe(task) -> str:
    """A task in words, for an error message."""
    keys = [it.key for it in task.items]
    if isinstance(task, ShardTask):
        return f"shard {task.index} ({keys[0]} .. {keys[-1]})"
    return f"a patch-pool task ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"


class _Tally:
    """A Ray actor's body: items finished, reported by tasks, collected by the driver's bar."""

    def __init__(self):
        self.n = 0

    def add(self, n: int) -> None:
        """Count ``n`` more finished items."""
        self.n += n

    def take(self) -> int:
        """The items counted since the last take."""
        n, self.n = self.n, 0
        return n


class RayRunner:
    """``run(fn, tasks, bar) -> results`` with one Ray task per item of ``tasks``.

    At most two tasks per CPU are in flight. Ray re-runs a task whose worker or node died
    (``max_retries``) and one that raised ``OSError`` or ``StorageError`` (a flaky shared filesystem
    or object store); shards are
    committed by the same atomic writes as in the local pool, so a re-run task rewrites identical
    bytes. Other exceptions fail the build. While a progress bar is shown, tasks report finished
    items to a small actor that the driver reads four times a second, so the bar moves by items
    as with the local pool; a task waits for each report to arrive, so its items are all counted
    when its result is ready and the bar ends at its total by counting (never past it, even when
    a retried task reports its items twice). The actor is one more process, so without a bar
    there is none.
    """

    def __init__(self, workers: int, address: str | None, retries: int = 3):
        self.workers, self.address, self.retries = workers, address, retries
        self._tally = None  # at most one actor per build, made when a bar first needs it
        self._owns_ray = False

    def __enter__(self) -> RayRunner:
        try:
            import ray
        except ImportError as exc:
            raise ImportError("--distributor ray needs Ray: pip install 's2pdata[ray]'") from exc
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            local = {"num_cpus": self.workers, "include_dashboard": False}
            kwargs = {"address": self.address} if self.address else local
            ray.init(log_to_driver=False, configure_logging=False, **kwargs)
        from ..storage import StorageError  # a request to the store that failed: as flaky as a shared disk

        retried = [OSError, StorageError]
        self._remote = ray.remote(num_cpus=1, max_retries=self.retries, retry_exceptions=retried)(_ray_call)
        self._max_pending = max(2, 2 * int(ray.cluster_resources().get("CPU", self.workers)))
        return self

    def __exit__(self, *exc) -> bool:
        import ray

        if self._tally is not None:
            ray.kill(self._tally)
        if self._owns_ray:
            ray.shutdown()
        return False

    def __call__(self, fn, tasks, bar) -> list:
        import ray

        tally = self._tally_for(bar)
        results: dict[int, object] = {}
        pending: dict = {}  # object ref -> (index, task)
        todo = list(reversed(list(enumerate(tasks))))
        try:
            while todo or pending:
                while todo and len(pending) < self._max_pending:
                    i, task = todo.pop()
                    pending[self._remote.remote(fn, task, tally)] = (i, task)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)  # returns at the first done
                for ref in ready:
                    i, task = pending.pop(ref)
                    results[i] = self._result(ref, task)
                    if tally is None:
                        _advance(bar, len(task.items))
                if tally is not None:
                    _advance(bar, ray.get(tally.take.remote()))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        return [results[i] for i in range(len(tasks))]

    def _tally_for(self, bar):
        """The actor tasks report to while ``bar`` is shown (None without a bar), emptied of any
        late reports of an earlier phase."""
        import ray

        if getattr(bar, "disable", False):
            return None
        if self._tally is None:
            self._tally = ray.remote(num_cpus=0)(_Tally).remote()
        ray.get(self._tally.take.remote())
        return self._tally

    def _result(self, ref, task):
        """A finished task's result; a task whose workers kept dying stops the build with advice."""
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.WorkerCrashedError as exc:
            raise BuildStopped(
                f"a Ray worker died {self.retries + 1} times on {_describe(task)} (a file that kills its reader, "
                "or out of memory); committed shards are kept. Re-run the same command to resume, or with "
                "--distributor local on one machine, which finds such a file and rejects it as worker-crashed"
            ) from exc


def _advance(bar, n: int) -> None:
    """Move ``bar`` by ``n`` items, never past its total (a re-run task reports its items again)."""
    bar.update(min(n, bar.total - bar.n) if bar.total else n)

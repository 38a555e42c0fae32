"""Distributors: ``run(fn, tasks, bar) -> results`` on a local process pool or on Ray.

Both have the same signature, so swapping one for the other is a one-word change
(``--distributor``).
"""

from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager

from .plan import ShardTask
from .worker import _init_worker, _started


class BuildStopped(RuntimeError):
    """Workers kept dying; committed shards are kept and a re-run resumes."""


DISTRIBUTORS = ("local", "ray")


@contextmanager
def local_runner(workers: int):
    """``run(fn, tasks, bar) -> results`` on a spawned process pool (in-process for one worker).

    ``fn(task, tick)`` runs in a worker; ``tick(n)`` reaches the parent's progress bar through a
    queue. One pool serves every phase of a build.

    A file that kills its worker (a decoder's segfault, the kernel's OOM killer) does not stop the
    build. Each worker keeps the key it is on in a small file; when the pool breaks, the tasks
    that had a key in flight become suspects and run again one at a time in a single-worker pool,
    so a second death names its item for certain. That item is then excluded (``task.crashed``;
    a ``worker-crashed`` reject) and its task re-run; every other task simply runs again. (With
    one worker the build runs in this process and has no such protection.)
    """
    if workers <= 1:
        from .._jit import worker_setup

        worker_setup()
        yield lambda fn, tasks, bar: [fn(t, bar.update) for t in tasks]
        return
    import dataclasses
    import multiprocessing as mp
    import tempfile
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    inflight = tempfile.mkdtemp(prefix="s2pdata-inflight-")

    def new_pool(n: int) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(queue, inflight))
        for _ in range(n):
            pool.submit(_started)  # spawn them all now
        return pool

    pools = [new_pool(workers)]  # pools[0] serves the build; replaced when a crash breaks it
    killers: set[str] = set()  # keys known to kill a worker, excluded from every later task too

    def excluding(task, keys):
        hit = tuple(sorted(k for k in keys if k not in task.crashed and any(it.key == k for it in task.items)))
        return dataclasses.replace(task, crashed=task.crashed + hit) if hit else task

    def in_flight() -> set[str]:
        """The keys the workers were on, each slot then blanked (live workers keep writing to theirs)."""
        keys = set()
        for name in os.listdir(inflight):
            with open(os.path.join(inflight, name), "r+b") as f:
                keys.add(f.read().decode(errors="replace").strip())
                f.truncate(0)
        return keys - {""}

    def attempt(pool, fn, tasks, indices) -> tuple[dict, set[str] | None]:
        """Results of the tasks that finished, and the keys in flight if a worker died."""
        futures = {pool.submit(fn, tasks[i]): i for i in indices}
        wait(futures, return_when=FIRST_EXCEPTION)
        done, broken = {}, False
        for f, i in futures.items():
            exc = f.exception() if f.done() else None
            if f.done() and exc is None:
                done[i] = f.result()
            elif isinstance(exc, BrokenProcessPool):
                broken = True
            elif exc is not None:
                for g in futures:
                    g.cancel()
                raise exc
        return done, (in_flight() if broken else None)

    def run(fn, tasks, bar):
        def advance(n):
            bar.update(min(n, bar.total - bar.n) if bar.total else n)  # re-runs never overfill it

        def drain():
            for n in iter(queue.get, None):  # None: the parent's own end marker
                advance(n)

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        tasks, results, suspects, blind = [excluding(t, killers) for t in tasks], {}, [], 0
        try:
            while len(results) < len(tasks):
                if suspects:  # alone in a fresh single-worker pool: a death now names its key
                    i = suspects.pop(0)
                    alone = new_pool(1)
                    try:
                        done, keys = attempt(alone, fn, tasks, [i])
                    finally:
                        alone.shutdown(wait=False, cancel_futures=True)
                    results.update(done)
                    if keys:
                        killers.update(keys)
                        tasks[i] = excluding(tasks[i], keys)
                        suspects.insert(0, i)
                    elif keys is not None:
                        blind += 1  # died between items: nothing to exclude
                        suspects.insert(0, i)
                else:
                    todo = [i for i in range(len(tasks)) if i not in results]
                    done, keys = attempt(pools[0], fn, tasks, todo)
                    results.update(done)
                    if keys is not None:
                        pools[0].shutdown(wait=False, cancel_futures=True)
                        pools[0] = new_pool(workers)
                        suspects = [
                            i for i in todo if i not in results and any(it.key in keys for it in tasks[i].items)
                        ]
                        blind += not suspects
                if blind > 3:
                    raise BuildStopped(
                        "build workers keep dying outside any one file (out of memory? see the "
                        "system log); committed shards are kept: re-run to resume"
                    )
            return [results[i] for i in range(len(tasks))]
        finally:
            queue.put(None)
            thread.join()
            while not queue.empty():
                advance(queue.get())

    try:
        yield run
    finally:
        pools[0].shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(inflight, ignore_errors=True)


def _ray_call(fn, task, tally):
    from .._jit import worker_setup

    worker_setup()
    return fn(task, tick=(lambda n: tally.add.remote(n)) if tally is not None else (lambda n: None))


def _describe(task) -> str:
    keys = [it.key for it in task.items]
    if isinstance(task, ShardTask):
        return f"shard {task.index} ({keys[0]} .. {keys[-1]})"
    return f"a patch-pool task ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"


class _Tally:
    """A Ray actor's body: items finished, reported by tasks, collected by the driver's bar."""

    def __init__(self):
        self.n = 0

    def add(self, n: int) -> None:
        self.n += n

    def take(self) -> int:
        n, self.n = self.n, 0
        return n


@contextmanager
def ray_runner(workers: int, address: str | None, retries: int = 3):
    """``run(fn, tasks, bar) -> results`` with one Ray task per item of ``tasks``.

    At most two tasks per CPU are in flight. Ray re-runs a task whose worker or node died
    (``max_retries``) and one that raised ``OSError`` (a flaky shared filesystem); shards are
    committed by the same atomic writes as in the local pool, so a re-run task rewrites identical
    bytes. Other exceptions fail the build. While a progress bar is shown, tasks report finished
    items to a small actor that the driver reads four times a second, so the bar moves by items
    as with the local pool (never past the run's total, even when a retried task reports its
    items twice); the actor is one more process, so without a bar there is none.
    """
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--distributor ray needs Ray: pip install 's2pdata[ray]'") from exc
    started = not ray.is_initialized()
    if started:
        kwargs = {"address": address} if address else {"num_cpus": workers, "include_dashboard": False}
        ray.init(log_to_driver=False, configure_logging=False, **kwargs)
    remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=[OSError])(_ray_call)
    tallies: list = []  # at most one actor per build, made when a bar first needs it
    in_flight = max(2, 2 * int(ray.cluster_resources().get("CPU", workers)))

    def run(fn, tasks, bar):
        results: dict[int, object] = {}
        pending: dict = {}
        todo = list(reversed(list(enumerate(tasks))))
        total, shown = sum(len(t.items) for t in tasks), 0
        if not getattr(bar, "disable", False) and not tallies:
            tallies.append(ray.remote(num_cpus=0)(_Tally).remote())
        tally = tallies[0] if tallies else None
        if tally is not None:
            ray.get(tally.take.remote())  # late reports of an earlier phase belong to no bar

        def show(n):
            nonlocal shown
            n = min(n, total - shown)
            bar.update(n)
            shown += n

        try:
            while todo or pending:
                while todo and len(pending) < in_flight:
                    i, task = todo.pop()
                    pending[remote.remote(fn, task, tally)] = (i, task)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)  # returns at the first done
                for ref in ready:
                    i, task = pending.pop(ref)
                    try:
                        results[i] = ray.get(ref)
                    except ray.exceptions.WorkerCrashedError as exc:
                        raise BuildStopped(
                            f"a Ray worker died {retries + 1} times on {_describe(task)} (a file that kills its "
                            "reader, or out of memory); committed "
                            "shards are kept. Re-run the same command to resume, or with --distributor local "
                            "on one machine, which finds such a file and rejects it as worker-crashed"
                        ) from exc
                    if tally is None:
                        show(len(task.items))
                if tally is not None:
                    show(ray.get(tally.take.remote()))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        show(total - shown)  # reports still on their way when the last task returned
        return [results[i] for i in range(len(tasks))]

    try:
        yield run
    finally:
        for tally in tallies:
            ray.kill(tally)
        if started:
            ray.shutdown()

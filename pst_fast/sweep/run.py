"""Running a sweep locally: each poison is generated once, then every cell trains in a pool of worker
processes; results go to the SQLite store as they finish. Re-running the same command skips finished cells,
restarts a killed cell from its last checkpoint (its run directory) and, with ``retry_failed``, reruns
failed ones. UD is computed last, from the finished cells' SAL records."""
from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import PstFastError
from ..io import check_out
from ..options import check
from .lock import db_lock
from .plan import Cell, expand, reference_of
from .progress import JobLines, reporting
from .report import tensorboard_name
from .spec import Spec
from .store import Store


def _worker_init(threads: int, gpu_slots=None, gpu_ids: tuple[str, ...] = (), die_with_parent: bool = True) -> None:
    """Set the worker's thread count; with ``gpu_ids``, claim the next one (``gpu_slots`` counts the workers started)
    so each local worker sees one GPU of its own; on Linux, die with the sweep process (a kill -9 of the sweep must
    not leave a worker still writing into a run directory that the restarted sweep resumes)."""
    if gpu_ids:
        with gpu_slots.get_lock():
            slot, gpu_slots.value = gpu_slots.value, gpu_slots.value + 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_ids[slot % len(gpu_ids)]  # before torch touches CUDA
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if die_with_parent and sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def local_gpus(device: str) -> tuple[str, ...]:
    """The GPUs local workers share out one each: all visible ones for device auto/cuda, none otherwise."""
    import torch

    if device not in ("auto", "cuda") or not torch.cuda.is_available():
        return ()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return tuple(visible.split(",")) if visible else tuple(str(i) for i in range(torch.cuda.device_count()))


def _make_poison(attack: str, dataset: str, params: dict, seed: int, out: str, device: str, progress_file: str | None = None) -> float:
    from ..attacks import poison
    from ..device import resolve_device

    if not Path(out).is_dir():  # a finished poison is a complete directory (written by rename)
        with reporting(progress_file) as shown:
            poison(attack, dataset, out, seed=seed, device=str(resolve_device(device)), progress=shown, **params)
    return time.time()


def _train_cell(config: dict, data: str, out: str, device: str, progress_file: str | None = None,
                tensorboard: str = "") -> tuple[dict, list[dict]]:
    from ..run import train
    from ..training import TrainConfig
    from ..training.rundir import RunDir

    with reporting(progress_file) as shown:
        cfg = TrainConfig(**config | {"data": data, "out": out, "device": device, "quiet": not shown, "tensorboard": tensorboard})
        summary = train(cfg)
    return summary, RunDir(out, cfg).metrics()


class RayPool:
    """The executor interface of ProcessPoolExecutor (``submit`` -> Future) over Ray tasks on an existing cluster
    (``address`` 'auto' or HOST:PORT) or a local instance (None). Tasks get ``threads`` CPUs (and ``gpus`` GPUs);
    only configs and paths are shipped: workers read datasets and write run directories on a shared path."""

    def __init__(self, address: str | None, threads: int, gpus: float = 0.0):
        try:
            import ray
        except ImportError:
            raise PstFastError("--executor ray: ray is not installed (pip install 'pst-fast[ray]')") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self.threads = threads
        self.task = ray.remote(num_cpus=threads, num_gpus=gpus)(_ray_task)

    def submit(self, fn, *args):
        return self.task.remote(self.threads, fn, *args).future()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _ray_task(threads: int, fn, *args):
    _worker_init(threads, die_with_parent=False)  # Ray assigns GPUs itself (num_gpus; CUDA_VISIBLE_DEVICES per task)
    return fn(*args)


def _name(c: Cell) -> str:
    return f"{c.attack} × {c.defense} ({c.model}, seed {c.seed})"


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]


def run_sweep(spec: Spec, db: str | Path, workdir: str | Path | None = None, workers: int | None = None,
              retry_failed: bool = False, progress: bool = True, executor: str = "local", address: str | None = None,
              tensorboard: str | None = None, wait: bool = False) -> Store:
    """Run every unfinished cell of ``spec``; artifacts live under ``workdir`` (default: DB name + '-runs').
    ``executor``: 'local' (a pool of worker processes) or 'ray' (tasks on the Ray cluster at ``address``).
    ``progress``: the job bar and each running job's progress under it (plain lines when stderr is not a terminal).
    ``tensorboard``: a directory where every cell trained now writes its TensorBoard events (one subdirectory per cell).
    The database is locked for the run (:mod:`pst_fast.sweep.lock`): a second runner fails naming the first, or with
    ``wait`` waits."""
    if workers is not None:
        check(workers, "--workers", int, ge=1)
    if executor not in ("local", "ray"):
        raise PstFastError(f"--executor {executor!r}: expected local or ray")
    check_out(db, "--db", new=False, file=True)
    Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    with db_lock(db, wait, say=lambda text: print(text, file=sys.stderr)):
        return _run_locked(spec, db, workdir, workers, retry_failed, progress, executor, address, tensorboard)


def _run_locked(spec: Spec, db, workdir, workers, retry_failed: bool, progress: bool, executor: str, address, tensorboard) -> Store:
    store = Store(db)
    cells = expand(spec)
    store.add_cells(cells)
    root = (Path(workdir) if workdir else Path(db).with_name(Path(db).stem + "-runs")).resolve()
    device = spec.resources.get("device", "auto")
    gpus = local_gpus(device) if executor == "local" else ()
    threads = spec.resources.get("threads", 1)
    workers = workers or spec.resources.get("workers", len(gpus) or max(1, (os.cpu_count() or 1) // threads))
    todo = [c for c in cells if store.status(c.id) not in ("done",) + (() if retry_failed else ("failed",))]
    poisons = {c.poison.id: c.poison for c in todo if c.poison}
    ctx = multiprocessing.get_context("spawn")
    bar = tqdm(total=len(poisons) + len(todo), desc=f"sweep {spec.name}", unit="job", disable=not progress)
    failed_poisons: dict[str, str] = {}
    say = bar.write if progress else (lambda text: None)
    running = JobLines(root, live=sys.stderr.isatty(), say=say, enabled=progress)
    if executor == "ray":
        pool = RayPool(address, threads, spec.resources.get("gpus_per_cell", 0.0))
    else:
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(threads, ctx.Value("i", 0), gpus))
    with pool:
        jobs = {}

        def submit_cell(c: Cell) -> None:
            if c.poison and c.poison.id in failed_poisons:
                store.cell_failed(c.id, failed_poisons[c.poison.id])
                bar.update(1)
                return
            out = str(root / "runs" / c.id)
            store.cell_queued(c.id, out)
            data = str(root / "poisons" / c.poison.id) if c.poison else c.dataset
            tb = str(Path(tensorboard).resolve() / tensorboard_name(c.dataset, c.attack, c.defense, c.model, c.seed, c.reference)) if tensorboard else ""
            jobs[pool.submit(_train_cell, c.config(), data, out, device, running.start(c.id, _name(c)), tb)] = ("cell", c)

        reused = set()
        for pid, p in poisons.items():  # poisons first; a cell starts as soon as its poison is there
            out = root / "poisons" / pid
            if out.is_dir() and store.artifact(pid) is not None:  # complete (written by rename) and recorded
                reused.add(pid)
                say(f"poison {p.attack} of {p.dataset}: reused ({out})")
            else:
                jobs[pool.submit(_make_poison, p.attack, p.dataset, dict(p.params), p.seed, str(out), device,
                                 running.start(p.id, f"poison {p.attack} of {p.dataset}"))] = ("poison", (p, str(out), time.time()))
        bar.update(len(reused))
        for c in todo:
            if not c.poison or c.poison.id in reused:
                submit_cell(c)
        while jobs:
            done, _ = wait(jobs, timeout=1.0, return_when=FIRST_COMPLETED)
            running.poll()
            for f in done:
                kind, what = jobs.pop(f)
                running.finish(what[0].id if kind == "poison" else what.id)
                bar.update(1)
                if kind == "poison":
                    p, out, t0 = what
                    if f.exception() is not None:
                        failed_poisons[p.id] = f"poison {p.attack}: {_error(f.exception())}"
                        say(f"{failed_poisons[p.id]} (its cells fail)")
                    else:
                        store.artifact_done(p.id, "poison", {"dataset": p.dataset, "attack": p.attack, "params": dict(p.params),
                                                             "seed": p.seed}, out, time.time() - t0)
                        say(f"poison {p.attack} of {p.dataset}: ready after {time.time() - t0:.0f} s")
                    for c in todo:
                        if c.poison and c.poison.id == p.id:
                            submit_cell(c)
                elif f.exception() is not None:
                    store.cell_failed(what.id, _error(f.exception()))
                    say(f"{_name(what)}: failed ({_error(f.exception())})")
                else:
                    store.cell_done(what.id, *f.result())
                    summary = f.result()[0]
                    say(f"{_name(what)}: {100 * summary['final_test_acc']:.1f}% clean test accuracy ({summary['wall_seconds'] / 60:.1f} min)")
    bar.close()
    if "ud" in spec.metrics:
        _fill_ud(store, cells, spec.ud_reference)
    return store


def _fill_ud(store: Store, cells: list[Cell], ud_reference: str) -> None:
    """UD of every finished cell against its finished clean reference (``ud_reference``: see :func:`reference_of`;
    1.0 for the reference itself)."""
    from ..metrics.ud import unlearnable_distance

    rows = {r["id"]: r for r in store.cells()}
    for c in cells:
        if not dict(c.train)["sal"]:
            continue
        ref = reference_of(c, cells, ud_reference)
        row, ref_row = rows.get(c.id), rows.get(ref.id) if ref else None
        if not (row and ref_row and row["status"] == ref_row["status"] == "done"):
            continue
        try:
            rep = unlearnable_distance(ref_row["run_dir"], [row["run_dir"]], ud_reference)
        except PstFastError as e:
            store.note_error(c.id, f"UD: {e}")
            continue
        store.set_ud(c.id, rep["runs"][0]["ud"], rep["runs"][0]["lp"])


def fail_if_cells_failed(rows, db: str) -> None:
    """A sweep with failed cells ends with a non-zero exit (their errors are in the table and in ``db``)."""
    failed = sum(r["status"] == "failed" for r in rows)
    if failed:
        raise PstFastError(f"{failed} of {len(rows)} cells failed (errors above and in {db}); fix the cause and rerun with --retry-failed")

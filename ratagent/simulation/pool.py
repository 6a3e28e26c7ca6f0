"""Render on several CPU cores: this process and worker processes beside it.

:func:`~ratagent.simulation.renderer.render` runs on one intra-op thread on the CPU (its
scatter-adds are serial, and threads inside one process contend for the allocator and
the interpreter lock), so :class:`RenderPool` uses processes instead:

* :meth:`RenderPool.map` renders a stream of batches, each whole in one process. A batch
  goes to a worker whose queue has room (``ahead`` batches deep), else this process
  renders it; the results come back in input order. Workers keep rendering while the
  caller consumes results, so a training loop can take its batches from here.
* :meth:`RenderPool.render` splits one batch by rows into parts of about equal work
  (real reflections), one per process, for a single large batch wanted soon.

Every row is rendered by the same code from the same numbers as by ``render``; a row's
sums can run in another order when its batch is split, so results agree to float
rounding (and are identical for whole batches, as in :meth:`~RenderPool.map`).

What travels: a worker gets its batch through a pipe as numpy arrays (the reflections
without the columns that are padding in every row, and the per-pattern parameters) and
writes its rows into a shared-memory buffer that stays mapped between batches, so the
large (rows × 2θ points) output is never pickled. Workers start once (``spawn``: torch is not
fork-safe) and live until :meth:`RenderPool.close` or the end of the ``with`` block.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import fields
from multiprocessing import get_context
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import torch

from ratagent.instrument import Instrument
from ratagent.simulation.renderer import PatternParams, ReflectionBatch, render

__all__ = ["RenderPool", "split_rows"]

_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_PER_REFLECTION = ("hkl", "multiplicity", "f2", "mask")
Job = tuple[ReflectionBatch, PatternParams]


def split_rows(weights: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Contiguous row ranges ``[(start, stop), ...]`` of about equal total weight.

    At most ``parts`` ranges, none empty; a range ends at the first row whose cumulative
    weight reaches its share of the total.
    """
    weights = np.asarray(weights, float)
    n = len(weights)
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    if n == 0:
        return []
    total = np.cumsum(np.maximum(weights, 0.0) + 1e-9)  # empty rows still cost a little
    cuts = np.searchsorted(total, total[-1] * np.arange(1, parts) / parts, side="left") + 1
    bounds = sorted({0, n, *(int(c) for c in cuts if 0 < c < n)})
    return list(itertools.pairwise(bounds))


def _rows(batch: ReflectionBatch, params: PatternParams, start: int, stop: int) -> Job:
    """Rows ``start:stop`` of a batch and of its parameters (views)."""
    sub = {f.name: getattr(batch, f.name) for f in fields(batch)}
    sub = {k: None if v is None else v[start:stop] for k, v in sub.items()}
    cut = PatternParams(**{f.name: getattr(params, f.name)[start:stop] for f in fields(params)})
    return ReflectionBatch(**sub), cut


def _pack(batch: ReflectionBatch, params: PatternParams) -> dict:
    """A batch and its parameters as numpy arrays, the columns of padding alone cut off."""
    used = torch.nonzero(batch.mask.any(0))
    n = int(used[-1]) + 1 if len(used) else 1
    arrays = {}
    for f in fields(batch):
        value = getattr(batch, f.name)
        if value is not None and f.name in _PER_REFLECTION:
            value = value[:, :n]
        arrays[f.name] = None if value is None else value.numpy()
    arrays["params"] = {f.name: getattr(params, f.name).numpy() for f in fields(params)}
    return arrays


def _unpack(arrays: dict) -> Job:
    """The batch and parameters of :func:`_pack` as tensors."""
    params = PatternParams(**{k: torch.from_numpy(v) for k, v in arrays.pop("params").items()})
    tensors = {k: None if v is None else torch.from_numpy(v) for k, v in arrays.items()}
    return ReflectionBatch(**tensors), params


def _worker(conn) -> None:
    """Worker loop: render batches into the shared buffer until told to stop.

    A thread reads the pipe while the renderer runs: a message larger than the pipe's
    buffer would otherwise hold the pool's process in ``send`` until this batch is done.
    """
    torch.set_num_threads(1)  # as render does: no idle intra-op threads beside it
    inbox: queue.SimpleQueue = queue.SimpleQueue()

    def read() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                message = None
            inbox.put(message)
            if message is None:
                return

    threading.Thread(target=read, daemon=True).start()
    shm = None
    try:
        while (message := inbox.get()) is not None:
            name, offset, arrays, instrument, window_fwhm = message
            try:
                if shm is None or shm.name != name:
                    if shm is not None:
                        shm.close()
                    # spawned workers share the pool's resource tracker: the pool unlinks it
                    shm = SharedMemory(name=name)
                batch, params = _unpack(arrays)
                y = render(batch, instrument, params, window_fwhm=window_fwhm).numpy().reshape(-1)
                np.ndarray((y.size,), y.dtype, shm.buf, offset * y.itemsize)[:] = y
                del y
                conn.send(None)
            except Exception:  # the caller raises it, with this traceback
                conn.send(traceback.format_exc())
    finally:
        if shm is not None:
            shm.close()


class _Pending:
    """A batch of :meth:`RenderPool.map` in input order: rendered, or still in a worker."""

    __slots__ = ("dtype", "offset", "result", "rows", "worker")

    def __init__(self, result=None, worker=-1, offset=0, rows=0, dtype=torch.float32) -> None:
        self.result, self.worker, self.offset, self.rows, self.dtype = result, worker, offset, rows, dtype


class RenderPool:
    """:func:`~ratagent.simulation.renderer.render` of CPU batches on ``processes`` cores.

    Parameters
    ----------
    processes : int, optional
        Processes that render, this one included (``processes − 1`` workers start).
        Default: the CPU cores this process may run on.
    ahead : int
        Batches of :meth:`map` queued in each worker at most.

    Use as a context manager, or call :meth:`close`::

        with RenderPool() as pool:
            for y in pool.map((collate(part) for part in parts), Instrument()):
                ...
    """

    def __init__(self, processes: int | None = None, *, ahead: int = 2) -> None:
        if processes is None:
            affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere every core
            processes = len(affinity(0)) if affinity else (os.cpu_count() or 1)
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        if ahead < 1:
            raise ValueError(f"ahead must be at least 1, got {ahead}")
        self.processes, self.ahead = int(processes), int(ahead)
        self._shm: SharedMemory | None = None
        self._slot = 0  # bytes per (worker, queue place) in the shared buffer
        self._busy = False
        self._conns = []
        self._procs = []
        ctx = get_context("spawn")
        try:
            for _ in range(self.processes - 1):
                here, there = ctx.Pipe()
                proc = ctx.Process(target=_worker, args=(there,), daemon=True)
                proc.start()
                there.close()
                self._conns.append(here)
                self._procs.append(proc)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and free the shared buffer (idempotent)."""
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:  # the worker is gone already
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []
        self._free()

    def _free(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm, self._slot = None, 0

    def _reserve(self, slot_bytes: int) -> None:
        """A shared buffer of ``ahead`` places per worker, each at least ``slot_bytes``
        (only while no worker holds a batch)."""
        if slot_bytes > self._slot:
            self._free()
            self._slot = -(-slot_bytes // 64) * 64  # aligned for any dtype
            self._shm = SharedMemory(create=True, size=max(1, self._slot * self.ahead * len(self._conns)))

    def _place(self, worker: int, k: int, itemsize: int) -> int:
        """Element offset of place ``k`` (< ``ahead``) of ``worker`` in the shared buffer."""
        return (worker * self.ahead + k) * self._slot // itemsize

    def _send(self, worker: int, job: Job, offset: int, instrument: Instrument, window_fwhm: float) -> None:
        try:
            self._conns[worker].send((self._shm.name, offset, _pack(*job), instrument, window_fwhm))
        except OSError as error:
            raise RuntimeError(self._gone(worker)) from error

    def _receive(self, worker: int) -> None:
        """Wait for the oldest batch of ``worker``; raise its failure, if any."""
        try:
            reply = self._conns[worker].recv()
        except EOFError:
            reply = self._gone(worker)
        if reply is not None:
            raise RuntimeError(f"render worker {worker + 1} failed:\n{reply}")

    def _gone(self, worker: int) -> str:
        return f"render worker {worker + 1} exited (exit code {self._procs[worker].exitcode})"

    def _shared(self, offset: int, rows: int, n_points: int, dtype: torch.dtype) -> torch.Tensor:
        """Rows written by a worker at element ``offset`` of the buffer (a view)."""
        item = np.dtype(_DTYPES[dtype])
        view = np.ndarray((rows * n_points,), item, self._shm.buf, offset * item.itemsize)
        return torch.from_numpy(view).view(rows, n_points)

    def _local(self, batch: ReflectionBatch) -> bool:
        """Whether ``batch`` is rendered in this process (no workers, a GPU, another dtype)."""
        return not self._conns or batch.hkl.device.type != "cpu" or batch.hkl.dtype not in _DTYPES

    def _claim(self) -> None:
        if self._busy:
            raise RuntimeError("this RenderPool is already rendering (a map() not yet consumed?)")
        self._busy = True

    def render(
        self,
        batch: ReflectionBatch,
        instrument: Instrument,
        params: PatternParams | None = None,
        *,
        window_fwhm: float = 8.0,
    ) -> torch.Tensor:
        """:func:`~ratagent.simulation.renderer.render` of one batch split by rows, (B, G).

        The rows are divided into parts of about equal real reflection count, one per
        process. Suited to one large batch wanted soon; a stream of batches keeps the
        cores busier through :meth:`map`.
        """
        if params is None:
            params = PatternParams.from_instrument(
                instrument, len(batch), device=batch.hkl.device, dtype=batch.hkl.dtype
            )
        ranges = [] if self._local(batch) else split_rows(batch.mask.sum(1).numpy(), self.processes)
        if len(ranges) < 2:  # nothing to share: no workers, a GPU batch, or one row's work
            return render(batch, instrument, params, window_fwhm=window_fwhm)
        self._claim()
        try:
            n_points = len(instrument.two_theta)
            item = batch.hkl.element_size()
            (start, stop), *rest = ranges
            self._reserve(max(b - a for a, b in rest) * n_points * item)
            sent, failures = 0, []
            try:
                for worker, (a, b) in enumerate(rest):
                    self._send(worker, _rows(batch, params, a, b), self._place(worker, 0, item), instrument,
                               window_fwhm)
                    sent += 1
                head_batch, head_params = _rows(batch, params, start, stop)
                head = render(head_batch, instrument, head_params, window_fwhm=window_fwhm)
            finally:
                for worker in range(sent):  # every reply, so that none is left for the next batch
                    try:
                        self._receive(worker)
                    except RuntimeError as error:
                        failures.append(error)
            if failures:
                raise failures[0]
            parts = [self._shared(self._place(w, 0, item), b - a, n_points, batch.hkl.dtype)
                     for w, (a, b) in enumerate(rest)]
            return torch.cat([head, *parts])
        finally:
            self._busy = False

    def map(
        self,
        batches: Iterable[ReflectionBatch | Job],
        instrument: Instrument,
        *,
        window_fwhm: float = 8.0,
    ) -> Iterator[torch.Tensor]:
        """Render a stream of batches (or (batch, params) pairs), each whole in one
        process; yields the (B, G) results in input order.

        A batch goes to the worker with the shortest queue while one has room, else this
        process renders it. On 2 cores a long stream of batches of 256 renders at about
        1.75 times the rate of one process (``benchmarks/simulate.py``).
        """
        self._claim()
        n_points = len(instrument.two_theta)
        order: deque[_Pending] = deque()  # every batch not yet yielded, in input order
        queued: list[deque[_Pending]] = [deque() for _ in self._conns]  # each worker's, oldest first
        sent = [0] * len(self._conns)

        def settle(worker: int) -> None:
            """Take the oldest batch of ``worker`` out of the shared buffer."""
            pending = queued[worker].popleft()
            self._receive(worker)
            rows = self._shared(pending.offset, pending.rows, n_points, pending.dtype)
            pending.result = rows.clone()

        def ready(block: bool) -> Iterator[torch.Tensor]:
            """Collect finished batches; yield the leading ones (waiting for them if ``block``)."""
            for worker, conn in enumerate(self._conns):
                while queued[worker] and conn.poll():
                    settle(worker)
            while order and (block or order[0].result is not None):
                while order[0].result is None:
                    settle(order[0].worker)
                yield order.popleft().result

        try:
            for item in batches:
                batch, params = item if isinstance(item, tuple) else (item, None)
                if params is None:
                    params = PatternParams.from_instrument(
                        instrument, len(batch), device=batch.hkl.device, dtype=batch.hkl.dtype
                    )
                worker = min(range(len(queued)), key=lambda w: len(queued[w]), default=-1)
                size = len(batch) * n_points * batch.hkl.element_size()
                if self._local(batch) or len(queued[worker]) >= self.ahead:
                    order.append(_Pending(render(batch, instrument, params, window_fwhm=window_fwhm)))
                else:
                    if size > self._slot:  # a larger batch than any before: empty the queues first
                        for w in range(len(queued)):
                            while queued[w]:
                                settle(w)
                        self._reserve(size)
                    offset = self._place(worker, sent[worker] % self.ahead, batch.hkl.element_size())
                    self._send(worker, (batch, params), offset, instrument, window_fwhm)
                    sent[worker] += 1
                    order.append(_Pending(None, worker, offset, len(batch), batch.hkl.dtype))
                    queued[worker].append(order[-1])
                yield from ready(block=len(order) > self.ahead * self.processes + 2)
            yield from ready(block=True)
        finally:
            for w in range(len(queued)):  # a consumer that stops early leaves nothing in the workers
                while queued[w]:
                    try:
                        settle(w)
                    except RuntimeError:
                        pass
            self._busy = False

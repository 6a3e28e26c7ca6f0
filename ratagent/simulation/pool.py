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

What travels: both ways through shared memory that stays mapped between batches, one
place per queued batch, so no array is pickled. This process copies a batch's arrays
(the reflections without the columns that are padding in every row, and the per-pattern
parameters) into an input place and sends through a pipe only where they lie; the worker
renders from views of them and writes its rows into an output place, which this process
copies out when it yields them. Workers start once (``spawn``: torch is not fork-safe)
and live until :meth:`RenderPool.close` or the end of the ``with`` block.
"""

from __future__ import annotations

import itertools
import os
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
    cut = PatternParams(**{k: v[start:stop] for k, v in params.tensors().items()})
    return ReflectionBatch(**sub), cut


#: Where one array of a batch lies in its input place: (name, dtype, shape, byte offset).
Entry = tuple[str, str, tuple[int, ...], int]
_PARAMS = "params."


def _pack(batch: ReflectionBatch, params: PatternParams) -> tuple[dict[str, np.ndarray], list[Entry], int]:
    """A batch and its parameters as numpy arrays (the columns of padding alone cut off,
    absent fields left out), where each goes in an input place, and the bytes they take."""
    used = torch.nonzero(batch.mask.any(0))
    n = int(used[-1]) + 1 if len(used) else 1
    arrays = {}
    for f in fields(batch):
        value = getattr(batch, f.name)
        if value is not None:
            arrays[f.name] = (value[:, :n] if f.name in _PER_REFLECTION else value).numpy()
    arrays.update({_PARAMS + k: v.numpy() for k, v in params.tensors().items()})
    layout, nbytes = [], 0
    for name, a in arrays.items():
        layout.append((name, a.dtype.str, a.shape, nbytes))
        nbytes += max(64, -(-a.nbytes // 64) * 64)  # aligned for any dtype; never at the very end
    return arrays, layout, nbytes


def _unpack(buf, base: int, layout: list[Entry]) -> Job:
    """The batch and parameters that :func:`_pack` laid out at byte ``base`` of ``buf``,
    as tensors on views of it (valid while ``buf`` is)."""
    arrays = {name: torch.from_numpy(np.ndarray(shape, dtype, buf, base + offset))
              for name, dtype, shape, offset in layout}
    params = PatternParams(**{k[len(_PARAMS):]: v for k, v in arrays.items() if k.startswith(_PARAMS)})
    return ReflectionBatch(**{k: v for k, v in arrays.items() if not k.startswith(_PARAMS)}), params


def _render_into(inputs: SharedMemory, base: int, layout: list[Entry], out: SharedMemory, offset: int,
                 instrument: Instrument, window_fwhm: float) -> None:
    """Render the batch at ``base`` of ``inputs`` into ``out`` at element ``offset``; no view
    of either buffer outlives the call (a mapped buffer with views cannot be closed)."""
    batch, params = _unpack(inputs.buf, base, layout)
    # the rendered rows are a view inside a wider buffer: copied once, straight in
    y = render(batch, instrument, params, window_fwhm=window_fwhm).numpy()
    np.ndarray(y.shape, y.dtype, out.buf, offset * y.itemsize)[:] = y


def _worker(conn) -> None:
    """Worker loop: render batches from the input buffer into the output buffer until
    told to stop (a message ``None``). Each message names the two buffers (a larger
    batch than any before brings new ones), where the batch lies and where its rows go."""
    torch.set_num_threads(1)  # as render does: no idle intra-op threads beside it
    mapped: dict[str, SharedMemory] = {}
    try:
        while (message := conn.recv()) is not None:
            in_name, base, layout, out_name, offset, instrument, window_fwhm = message
            try:
                for name in set(mapped) - {in_name, out_name}:  # replaced by larger ones
                    mapped.pop(name).close()
                for name in (in_name, out_name):
                    if name not in mapped:
                        # spawned workers share the pool's resource tracker: the pool unlinks it
                        mapped[name] = SharedMemory(name=name)
                _render_into(mapped[in_name], base, layout, mapped[out_name], offset, instrument,
                             window_fwhm)
                conn.send(None)
            except Exception:  # the caller raises it, with this traceback
                conn.send(traceback.format_exc())
    except (EOFError, OSError):  # the pool is gone
        pass
    finally:
        for shm in mapped.values():
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
        self._shm: SharedMemory | None = None  # the rendered rows
        self._slot = 0  # bytes per (worker, queue place) in it
        self._in_shm: SharedMemory | None = None  # the batches
        self._in_slot = 0
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
        for shm in (self._shm, self._in_shm):
            if shm is not None:
                shm.close()
                shm.unlink()
        self._shm, self._slot, self._in_shm, self._in_slot = None, 0, None, 0

    def _fits(self, out_bytes: int, in_bytes: int) -> bool:
        return out_bytes <= self._slot and in_bytes <= self._in_slot

    def _reserve(self, out_bytes: int, in_bytes: int) -> None:
        """Shared buffers of ``ahead`` places per worker, each of at least ``out_bytes``
        for the rows and ``in_bytes`` for the batch (only while no worker holds a batch)."""
        if self._fits(out_bytes, in_bytes):
            return
        out_slot, in_slot = (-(-max(n, old) // 64) * 64  # aligned for any dtype
                             for n, old in ((out_bytes, self._slot), (in_bytes, self._in_slot)))
        self._free()
        places = self.ahead * len(self._conns)
        self._shm = SharedMemory(create=True, size=max(1, out_slot * places))
        self._slot = out_slot
        self._in_shm = SharedMemory(create=True, size=max(1, in_slot * places))
        self._in_slot = in_slot

    def _place(self, worker: int, k: int, slot: int, itemsize: int = 1) -> int:
        """Offset, in items of ``itemsize`` bytes, of place ``k`` (< ``ahead``) of ``worker``
        in a buffer of ``slot``-byte places."""
        return (worker * self.ahead + k) * slot // itemsize

    def _send(self, worker: int, k: int, packed: tuple, itemsize: int, instrument: Instrument,
              window_fwhm: float) -> int:
        """Put a :func:`_pack`-ed batch in place ``k`` of ``worker`` and have it rendered;
        returns the element offset its rows will have in the output buffer."""
        arrays, layout, _ = packed
        base = self._place(worker, k, self._in_slot)
        for name, dtype, shape, at in layout:
            np.ndarray(shape, dtype, self._in_shm.buf, base + at)[...] = arrays[name]
        offset = self._place(worker, k, self._slot, itemsize)
        try:
            self._conns[worker].send((self._in_shm.name, base, layout, self._shm.name, offset, instrument,
                                      window_fwhm))
        except OSError as error:
            raise RuntimeError(self._gone(worker)) from error
        return offset

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
            packed = [_pack(*_rows(batch, params, a, b)) for a, b in rest]
            self._reserve(max(b - a for a, b in rest) * n_points * item, max(p[2] for p in packed))
            sent, failures = 0, []
            try:
                for worker, part in enumerate(packed):
                    self._send(worker, 0, part, item, instrument, window_fwhm)
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
            parts = [self._shared(self._place(w, 0, self._slot, item), b - a, n_points, batch.hkl.dtype)
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
        process renders it. On 2 cores a long stream of batches of 256 renders at 1.8–2.0
        times the rate of one process (``benchmarks/simulate.py``).
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
                if self._local(batch) or len(queued[worker]) >= self.ahead:
                    order.append(_Pending(render(batch, instrument, params, window_fwhm=window_fwhm)))
                else:
                    item = batch.hkl.element_size()
                    packed = _pack(batch, params)
                    size = len(batch) * n_points * item
                    if not self._fits(size, packed[2]):  # larger than any before: empty the queues first
                        for w in range(len(queued)):
                            while queued[w]:
                                settle(w)
                        self._reserve(size, packed[2])
                    offset = self._send(worker, sent[worker] % self.ahead, packed, item, instrument,
                                        window_fwhm)
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

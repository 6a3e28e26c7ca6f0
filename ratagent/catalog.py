"""Where runs are stored: an embedded tiled catalog in a directory, or a tiled server.

:class:`Catalog` gives a tiled client and a ``bluesky_tiled_plugins.TiledWriter`` to
subscribe to a RunEngine. With a ``directory`` it starts
``tiled.server.SimpleTiledServer`` on loopback in a background thread (SQLite/DuckDB and
files under the directory; nothing to start by hand); reopening the same directory later,
from any process, reads the old runs. With a ``uri`` it talks to a running tiled server.

>>> with Catalog("runs/") as cat:           # doctest: +SKIP
...     RE.subscribe(cat.writer)
...     uid, = RE(plan)
...     cat[uid]["symmetry"].read()
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Catalog", "CatalogWriteError", "GuardedWriter", "read_spool"]

logger = logging.getLogger(__name__)


#: Where a run's documents go when the catalog cannot take them (unless told otherwise).
DEFAULT_SPOOL = Path.home() / ".ratagent" / "spool"


class CatalogWriteError(RuntimeError):
    """The catalog failed to store a document; the run's documents went to a spool file."""


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a spool file")


class GuardedWriter:
    """A catalog writer that never loses a run's documents when the catalog fails.

    Every document of the current run is passed to ``writer`` (a ``TiledWriter``) and kept
    until the run's ``stop``. When ``writer`` raises (the catalog's disk full, its folder
    removed, the server gone), the run's documents so far, and all that follow until its
    ``stop``, are written as JSON lines to ``spool/<run uid>.jsonl``, and
    :class:`CatalogWriteError` is raised once, naming the file: the RunEngine then ends the
    run, and its stop document (``exit_status="fail"``) goes to the same file. The next
    run tries the catalog again. :func:`read_spool` reads a spool file back; a catalog
    that works again takes it with :meth:`Catalog.import_spool`.
    """

    def __init__(self, writer: Callable[[str, dict], Any], spool: str | Path, where: str) -> None:
        self.writer = writer
        self.spool = Path(spool)
        self.where = where
        self._run: list[tuple[str, dict]] = []
        self._file = None

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self._run, self._file = [], None
        self._run.append((name, doc))
        if self._file is not None:
            self._spool(name, doc)
        else:
            try:
                self.writer(name, doc)
            except Exception as exc:
                self._file = self._open(self._run[0][1].get("uid", "unknown-run"))
                for n, d in self._run:
                    self._spool(n, d)
                raise CatalogWriteError(
                    f"the catalog at {self.where} failed to store a {name} document ({type(exc).__name__}: "
                    f"{exc}); this run's documents are in {self._file}") from exc
        if name == "stop":
            self._run = []
            if self._file is not None:
                logger.error("run %s was stored in %s, not in the catalog at %s", doc.get("run_start"),
                             self._file, self.where)
                self._file = None

    def _open(self, uid: str) -> Path:
        self.spool.mkdir(parents=True, exist_ok=True)
        path = self.spool / f"{uid}.jsonl"
        path.write_text("")
        return path

    def _spool(self, name: str, doc: dict) -> None:
        with open(self._file, "a") as f:
            f.write(json.dumps([name, doc], default=_plain) + "\n")


def read_spool(path: str | Path) -> Iterator[tuple[str, dict]]:
    """The (name, document) pairs of a spool file written by :class:`GuardedWriter`."""
    path = Path(path)
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            name, doc = json.loads(line)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: line {n} is not a spooled document ({exc})") from None
        yield name, doc


def _close_when_main_ends(catalog: weakref.ref) -> None:
    threading.main_thread().join()
    if (c := catalog()) is not None:
        c.close()


#: Name of the embedded catalog's container of runs.
RUNS = "runs"


class Catalog:
    """A tiled catalog of Bluesky runs (embedded in a directory, or on a server).

    Parameters
    ----------
    directory : str or Path, optional
        Directory of the embedded catalog (created if needed).
    uri : str, optional
        URI of a running tiled server instead of a directory.
    api_key : str, optional
        API key for ``uri``.
    spool : str or Path, optional
        Where a run's documents go when the catalog fails to store them
        (:class:`GuardedWriter`; default ``~/.ratagent/spool``).
    read_only : bool
        Open an existing embedded catalog for reading only. A folder this process cannot
        write to (an archive, another user's catalog) is opened so without asking. The
        embedded server writes its logs and database journal beside the data, so it
        serves a copy of the folder made on opening (removed on :meth:`close`); the
        folder itself is never touched, and :attr:`writer` refuses.

    Exactly one of ``directory`` and ``uri`` must be given. The catalog opens on
    construction; close it with :meth:`close` or use it as a context manager.
    """

    def __init__(self, directory: str | Path | None = None, *, uri: str | None = None,
                 api_key: str | None = None, spool: str | Path | None = None,
                 read_only: bool = False) -> None:
        if (directory is None) == (uri is None):
            raise ValueError(
                f"give exactly one of directory and uri, got directory={directory!r}, uri={uri!r}")
        if directory is not None and not str(directory).strip():
            raise ValueError("directory is an empty path: name the catalog's folder (the current folder "
                             "is never taken by default)")
        from tiled.client import from_uri

        self.directory = None if directory is None else Path(directory).resolve()
        self._server = None
        self._snapshot: Path | None = None
        self.read_only = bool(read_only)
        if self.directory is not None:
            from tiled.server import SimpleTiledServer

            served = self._served_folder()
            self._server = SimpleTiledServer(directory=served)
            uri = self._server.uri
            logger.info("embedded tiled catalog in %s at %s", self.directory, uri)
            # the server's thread is not a daemon: without a close it would keep the process
            # alive after its main thread ends (a startup profile, a script that forgets close)
            threading.Thread(target=_close_when_main_ends, args=(weakref.ref(self),), daemon=True,
                             name="ratagent-catalog-closer").start()
        self.uri: str = uri
        self.client = from_uri(uri, api_key=api_key) if api_key else from_uri(uri)
        self.runs = self._runs()
        self._writer = None
        self.spool = Path(spool) if spool is not None else DEFAULT_SPOOL

    def _served_folder(self) -> Path:
        """The folder the embedded server serves: the catalog's own, or for reading only a
        copy of it."""
        d = self.directory
        if not self.read_only and d.exists() and not os.access(d, os.W_OK | os.X_OK):
            logger.warning("%s is not writable by this process: opening it for reading only", d)
            self.read_only = True
        if not self.read_only:
            d.mkdir(parents=True, exist_ok=True)
            return d
        if not (d / "catalog.db").is_file():
            raise FileNotFoundError(f"{d} holds no catalog (no catalog.db) to open for reading")
        self._snapshot = Path(tempfile.mkdtemp(prefix="ratagent-catalog-"))
        copy = self._snapshot / "catalog"
        shutil.copytree(d, copy, ignore=shutil.ignore_patterns("*.log"))
        # the catalog's database names its data files by absolute path: point them at the copy
        import sqlite3

        with sqlite3.connect(copy / "catalog.db") as db:
            db.execute("UPDATE assets SET data_uri = replace(data_uri, ?, ?)", (f"{d}/", f"{copy}/"))
        db.close()
        return copy

    @property
    def writer(self) -> GuardedWriter:
        """The writer to subscribe to the RunEngine (made on first use): a ``TiledWriter``
        for this catalog, guarded so that a failing catalog loses nothing (:class:`GuardedWriter`)."""
        if self.read_only:
            raise PermissionError(f"{self!r} is open for reading only: runs cannot be written to it")
        if self._writer is None:
            self._writer = GuardedWriter(self._tiled_writer(), self.spool, self._where())
        return self._writer

    def _runs(self):
        """The catalog's container of runs, made on first use with the Bluesky catalog spec,
        so that ``runs[-1]``, ``runs.scan_id[3]`` and searches work. A catalog that already
        holds entries at its root (written before, or a facility's server) is used as it is."""
        if RUNS in self.client:
            return self.client[RUNS]
        if len(self.client) or self.read_only:
            return self.client
        from tiled.structures.core import Spec

        return self.client.create_container(RUNS, specs=[Spec("CatalogOfBlueskyRuns", version="3.0")])

    def _tiled_writer(self):
        from bluesky_tiled_plugins import TiledWriter

        # batch_size=1: every event is written as it comes, so a crash loses nothing;
        # max_array_size=0: every array is stored as an array (small ones would otherwise
        # go into the run's SQL table and come back as strings)
        return TiledWriter(self.runs, batch_size=1, max_array_size=0)

    def _where(self) -> str:
        return str(self.directory) if self.directory is not None else self.uri

    def import_spool(self, path: str | Path) -> str:
        """Store a run from a spool file (:class:`GuardedWriter`) in this catalog; its uid."""
        if self.read_only:
            raise PermissionError(f"{self!r} is open for reading only: {path} cannot be imported into it")
        writer = self._tiled_writer()
        uid = None
        for name, doc in read_spool(path):
            uid = uid or doc.get("uid")
            writer(name, doc)
        if uid is None:
            raise ValueError(f"{path}: holds no documents")
        return uid

    def __getitem__(self, key: str | int) -> Any:
        """A run (a tiled container with ``primary``, ``symmetry``, ...) by uid, partial
        uid, scan id, or −N for the N-th last."""
        return self.runs[key]

    def __len__(self) -> int:
        return len(self.runs)

    def uids(self) -> list[str]:
        """uids of every run, oldest first."""
        return list(self.runs)

    def close(self) -> None:
        """Close the client and stop the embedded server (its files stay); again: nothing."""
        server, self._server = self._server, None
        client, self.client = self.client, None
        try:
            if client is not None:
                client.context.close()
        finally:
            if server is not None:
                server.close()
            snapshot, self._snapshot = self._snapshot, None
            if snapshot is not None:
                shutil.rmtree(snapshot, ignore_errors=True)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"directory={str(self.directory)!r}" if self.directory else f"uri={self.uri!r}"
        return f"Catalog({where}{', read_only=True' if self.read_only else ''})"

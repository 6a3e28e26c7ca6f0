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

import logging
from pathlib import Path
from typing import Any

__all__ = ["Catalog"]

logger = logging.getLogger(__name__)


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

    Exactly one of ``directory`` and ``uri`` must be given. The catalog opens on
    construction; close it with :meth:`close` or use it as a context manager.
    """

    def __init__(self, directory: str | Path | None = None, *, uri: str | None = None,
                 api_key: str | None = None) -> None:
        if (directory is None) == (uri is None):
            raise ValueError(
                f"give exactly one of directory and uri, got directory={directory!r}, uri={uri!r}")
        if directory is not None and not str(directory).strip():
            raise ValueError("directory is an empty path: name the catalog's folder (the current folder "
                             "is never taken by default)")
        from tiled.client import from_uri

        self.directory = None if directory is None else Path(directory).resolve()
        self._server = None
        if self.directory is not None:
            from tiled.server import SimpleTiledServer

            self.directory.mkdir(parents=True, exist_ok=True)
            self._server = SimpleTiledServer(directory=self.directory)
            uri = self._server.uri
            logger.info("embedded tiled catalog in %s at %s", self.directory, uri)
        self.uri: str = uri
        self.client = from_uri(uri, api_key=api_key) if api_key else from_uri(uri)
        self._writer = None

    @property
    def writer(self):
        """A ``TiledWriter`` for this catalog (subscribe it to the RunEngine); made on first use."""
        if self._writer is None:
            from bluesky_tiled_plugins import TiledWriter

            # batch_size=1: every event is written as it comes, so a crash loses nothing;
            # max_array_size=0: every array is stored as an array (small ones would otherwise
            # go into the run's SQL table and come back as strings)
            self._writer = TiledWriter(self.client, batch_size=1, max_array_size=0)
        return self._writer

    def __getitem__(self, uid: str) -> Any:
        """The run with this uid (a tiled container with ``primary``, ``symmetry``, ...)."""
        return self.client[uid]

    def __len__(self) -> int:
        return len(self.client)

    def uids(self) -> list[str]:
        """uids of every run, oldest first."""
        return list(self.client)

    def close(self) -> None:
        """Close the client and stop the embedded server (its files stay)."""
        try:
            self.client.context.close()
        finally:
            if self._server is not None:
                self._server.close()
                self._server = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"directory={str(self.directory)!r}" if self.directory else f"uri={self.uri!r}"
        return f"Catalog({where})"

"""An existing embedded catalog opened for reading only: explicitly, or because this
process cannot write to its folder. The runs read back; the folder is left as it was;
writing is refused."""

import hashlib
import os

import pytest
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import det

from ratagent.catalog import Catalog


def _fingerprint(folder):
    """Every file under ``folder`` with the hash of its bytes; the logs by name only (the
    writing catalog's server, earlier in this process, leaves its log handlers behind)."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.suffix != ".log"}
    return {str(p.relative_to(folder)): digest.get(p, "log") for p in files}


@pytest.fixture
def written(tmp_path):
    folder = tmp_path / "catalog"
    with Catalog(folder) as cat:
        RE = RunEngine({})
        RE.subscribe(cat.writer)
        (uid,) = RE(count([det], num=3))
    return folder, uid


def _reads_back_and_refuses_writes(cat, uid, folder, before):
    assert cat.read_only and "read_only=True" in repr(cat)
    assert cat[uid]["primary"].read()["det"].shape == (3,)
    with pytest.raises(PermissionError, match="open for reading only"):
        cat.writer  # noqa: B018
    cat.close()
    assert _fingerprint(folder) == before


def test_a_catalog_opened_read_only_reads_back_and_leaves_the_folder_as_it_was(written):
    folder, uid = written
    before = _fingerprint(folder)
    _reads_back_and_refuses_writes(Catalog(folder, read_only=True), uid, folder, before)


def test_a_folder_this_process_cannot_write_is_opened_read_only(written, monkeypatch, caplog):
    folder, uid = written
    before = _fingerprint(folder)
    real_access = os.access

    def access(path, mode):  # as for a read-only mount or another user's folder (root may write anywhere)
        return False if os.fspath(path) == str(folder) else real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    cat = Catalog(folder)
    assert "not writable by this process: opening it for reading only" in caplog.text
    _reads_back_and_refuses_writes(cat, uid, folder, before)


def test_a_folder_without_a_catalog_is_named_when_opened_read_only(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no catalog"):
        Catalog(tmp_path, read_only=True)

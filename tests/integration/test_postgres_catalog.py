"""A shared catalog: a tiled server on PostgreSQL, written by symmetry_scan and read back by
another process (the production setup; the embedded one is SQLite/DuckDB in a folder)."""

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from bluesky import RunEngine

from ratagent.testing import free_port, reachable, stop_process

pytestmark = pytest.mark.slow

POSTGRES = ("127.0.0.1", 5432)
ADMIN = f"postgresql://postgres@{POSTGRES[0]}:{POSTGRES[1]}/postgres"


def _admin(sql: str) -> None:
    import asyncpg

    async def run():
        conn = await asyncpg.connect(ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture
def postgres_tiled(tmp_path):
    if not reachable(*POSTGRES):
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES[0]}:{POSTGRES[1]}: the shared catalog keeps "
                    "its metadata and tables there")
    db = f"ratagent_test_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {db}")
    url = f"postgresql://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{db}"
    port = free_port()
    (tmp_path / "data").mkdir()
    tiled = Path(sys.executable).with_name("tiled")
    log = open(tmp_path / "tiled.log", "w")
    server = subprocess.Popen(
        [str(tiled), "serve", "catalog", url.replace("postgresql://", "postgresql+asyncpg://"), "--init",
         "-w", str(tmp_path / "data"), "-w", url, "--api-key", "secret", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 60
        while not reachable("127.0.0.1", port):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tiled server did not start: {(tmp_path / 'tiled.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield uri
    finally:
        stop_process(server)
        log.close()
        _admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_postgres_catalog_takes_a_scan_and_another_process_reads_it_back(postgres_tiled, tmp_path):
    from plans import symmetry_scan
    from ratagent.catalog import Catalog
    from ratagent.instrument import Instrument
    from ratagent.testing import tiny_agent
    from sim_beamline import PowderDetector, SampleChanger, mineral_sample

    agent = tiny_agent(tmp_path / "ckpt", max_candidates=4)
    changer = SampleChanger(name="changer")
    det = PowderDetector(name="det", changer=changer, time_scale=0.01, rng=np.random.default_rng(5),
                         instrument=Instrument(two_theta_min_deg=10.0, two_theta_max_deg=80.0, step_deg=0.02))
    with Catalog(uri=postgres_tiled, api_key="secret") as catalog:
        RE = RunEngine({})
        RE.subscribe(catalog.writer)
        (uid,) = RE(symmetry_scan(det, samples=["rutile", "quartz"], changer=changer, agent=agent,
                                  cell=mineral_sample("rutile").cell, max_remeasure=0))
    code = ("from ratagent.catalog import Catalog\n"
            f"with Catalog(uri={postgres_tiled!r}, api_key='secret') as c:\n"
            "    run = c[-1]\n"
            "    sym = run['symmetry'].read()\n"
            "    print(run.metadata['start']['uid'], run['primary'].read()['det_intensity'].shape[0],\n"
            "          ' '.join(sym['assessment_sample'].values), run.metadata['stop']['exit_status'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-5:] == [uid, "2", "rutile", "quartz", "success"]

"""symmetry_scan run by bluesky-queueserver: the shipped startup profile of the simulated
beamline, items added through bluesky-queueserver-api, decisions read back from tiled."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ratagent.testing import free_port, reachable, stop_process

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "sim_beamline" / "qserver"
REDIS = ("127.0.0.1", 6379)
QUARTZ = [4.9134, 4.9134, 5.4052, 90.0, 90.0, 120.0]


@pytest.fixture
def manager(tmp_path):
    pytest.importorskip("bluesky_queueserver",
                        reason="bluesky-queueserver is not installed: pip install -e '.[queueserver]'")
    from bluesky_queueserver_api.zmq import REManagerAPI

    from ratagent.catalog import Catalog

    if not reachable(*REDIS):
        pytest.skip(f"Redis is not reachable at {REDIS[0]}:{REDIS[1]}: the queueserver keeps its queue there")
    control, info = free_port(), free_port()
    catalog = Catalog(tmp_path / "catalog")
    env = {**os.environ, "RATAGENT_CATALOG_URI": catalog.uri, "RATAGENT_SIM_TIME_SCALE": "0.01",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", "from bluesky_queueserver.manager.start_manager import start_manager; "
           "start_manager()",
           "--startup-dir", str(PROFILE / "startup"),
           "--user-group-permissions", str(PROFILE / "user_group_permissions.yaml"),
           "--existing-plans-devices", str(tmp_path / "existing_plans_and_devices.yaml"),
           "--update-existing-plans-devices", "ENVIRONMENT_OPEN",
           "--redis-addr", f"{REDIS[0]}:{REDIS[1]}",
           "--redis-name-prefix", f"ratagent_test_{uuid.uuid4().hex}",
           "--zmq-control-addr", f"tcp://127.0.0.1:{control}", "--zmq-info-addr", f"tcp://127.0.0.1:{info}"]
    log = open(tmp_path / "manager.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    RM = REManagerAPI(zmq_control_addr=f"tcp://127.0.0.1:{control}", zmq_info_addr=f"tcp://127.0.0.1:{info}",
                      timeout_recv=10.0)
    try:
        RM.wait_for_idle(timeout=60)
        yield RM, catalog, tmp_path / "manager.log"
    finally:
        try:
            RM.environment_close()
            RM.wait_for_idle(timeout=30)
        except Exception:
            pass
        RM.close()
        stop_process(proc)
        log.close()
        catalog.close()


def test_queueserver_runs_symmetry_scan_items_and_the_decisions_reach_the_catalog(manager):
    from bluesky_queueserver_api import BPlan

    RM, catalog, log = manager
    RM.environment_open()
    RM.wait_for_idle(timeout=240)
    status = RM.status()
    assert status["worker_environment_exists"], log.read_text()[-3000:]
    assert "symmetry_scan" in RM.plans_allowed()["plans_allowed"]
    item = BPlan("symmetry_scan", "det", samples=["quartz", "rutile"], changer="changer", max_remeasure=0,
                 agent_config={"max_network_rank": 30}, md={"proposal": "qserver-test"})
    added = RM.item_add(item)
    assert added["success"], added["msg"]
    RM.queue_start()
    RM.wait_for_idle(timeout=300)
    history = RM.history_get()["items"]
    assert history and history[-1]["result"]["exit_status"] == "completed", history[-1]["result"]
    (uid,) = history[-1]["result"]["run_uids"]
    run = catalog[uid]
    assert run.metadata["start"]["proposal"] == "qserver-test"
    assert run.metadata["start"]["ratagent"]["agent_config"]["max_network_rank"] == 30
    sym = run["symmetry"].read()
    assert sym["assessment_sample"].values.tolist() == ["quartz", "rutile"]
    assert sym["assessment_refined"].values.tolist() == [1, 1]  # each refined in the cell the changer knows
    cells = run["primary"].read()["changer_cell"].values
    assert cells[0] == pytest.approx(QUARTZ, abs=1e-3)


def test_queueserver_refuses_a_bad_item_when_it_is_added(manager):
    from bluesky_queueserver_api import BPlan

    RM, _, _ = manager
    RM.environment_open()
    RM.wait_for_idle(timeout=240)
    with pytest.raises(RM.RequestFailedError, match=r"(?s)Plan validation failed.*count_time"):
        RM.item_add(BPlan("symmetry_scan", "det", count_time="long"))
    assert RM.queue_get()["items"] == []

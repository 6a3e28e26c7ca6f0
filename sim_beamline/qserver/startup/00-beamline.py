"""bluesky-queueserver startup of the simulated beamline: RunEngine, devices, the plan.

Start a manager on it (Redis on 127.0.0.1:6379)::

    RATAGENT_CATALOG_URI=http://host:8000/api/v1?api_key=... \\
    start-re-manager --startup-dir sim_beamline/qserver/startup \\
        --user-group-permissions sim_beamline/qserver/user_group_permissions.yaml

and queue ``symmetry_scan`` items with bluesky-queueserver-api, devices by name::

    RM.item_add(BPlan("symmetry_scan", "det", samples=["quartz"], changer="changer",
                      agent_config={"max_network_rank": 30}))

Environment: ``RATAGENT_CATALOG_URI`` (a running tiled server, with its API key in the URI
or in ``RATAGENT_CATALOG_API_KEY``) where runs are written; ``RATAGENT_SIM_TIME_SCALE``
(real seconds per second of count time, default 1).
"""

import os

from bluesky import RunEngine

from plans import symmetry_scan  # noqa: F401  (the plan the queue runs)
from sim_beamline import PowderDetector, SampleChanger

RE = RunEngine({})
changer = SampleChanger(name="changer")
det = PowderDetector(name="det", changer=changer,
                     time_scale=float(os.environ.get("RATAGENT_SIM_TIME_SCALE", "1")))

if os.environ.get("RATAGENT_CATALOG_URI"):
    from ratagent.catalog import Catalog

    catalog = Catalog(uri=os.environ["RATAGENT_CATALOG_URI"],
                      api_key=os.environ.get("RATAGENT_CATALOG_API_KEY"))
    RE.subscribe(catalog.writer)

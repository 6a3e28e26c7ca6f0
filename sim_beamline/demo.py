"""``ratagent demo``: the whole loop on the simulated beamline, stored in an embedded catalog."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

__all__ = ["DEMO_SAMPLES", "run_demo"]

logger = logging.getLogger(__name__)

#: Samples the demo measures, in order (the weak one needs a longer count time).
DEMO_SAMPLES = ("quartz", "rutile", "baddeleyite (weak)", "calcite", "halite", "forsterite")


def run_demo(directory: str | Path, n_samples: int = 4, *, checkpoint: str | Path | None = None,
             time_scale: float = 0.05, seed: int = 0, console=None) -> str:
    """Run ``symmetry_scan`` over ``n_samples`` simulated samples into an embedded catalog.

    Parameters
    ----------
    directory : str or Path
        Directory of the embedded catalog (created; reused if it exists).
    n_samples : int
        How many of :data:`DEMO_SAMPLES` to measure (1–6).
    checkpoint : str or Path, optional
        Model checkpoint directory. Default: the shipped one; when none is shipped, an
        untrained tiny network is saved under ``directory/untrained-checkpoint`` and the
        output says so.
    time_scale : float
        Real seconds per second of count time.
    seed : int
        Seed of the detector's counting noise.

    Returns
    -------
    str
        The uid of the run.
    """
    from bluesky import RunEngine
    from rich.console import Console

    from plans import LiveAssessmentTable, symmetry_scan
    from ratagent.agent import Agent
    from ratagent.catalog import Catalog
    from ratagent.instrument import Instrument
    from ratagent.model import load
    from sim_beamline.devices import PowderDetector, SampleChanger
    from sim_beamline.samples import hard_sample

    if not 1 <= n_samples <= len(DEMO_SAMPLES):
        raise ValueError(f"n_samples must be 1–{len(DEMO_SAMPLES)}, got {n_samples}")
    if console is None:
        console = Console()
        if not console.is_terminal:  # a file or a pipe has no screen to fit: 9 columns fold at 80
            console.width = max(console.width, 160)
    directory = Path(directory).resolve()
    untrained = False
    if checkpoint is None:
        try:
            classifier = load()
        except FileNotFoundError:
            from ratagent.testing import tiny_checkpoint

            classifier = load(tiny_checkpoint(directory / "untrained-checkpoint", seed))
            untrained = True
    else:
        classifier = load(checkpoint)
    if untrained:
        console.print("[bold yellow]No trained checkpoint is shipped: using an UNTRAINED tiny network; "
                      "its posteriors are noise, only the Pawley ranking is informative.[/]")
    changer = SampleChanger(name="changer", samples=[hard_sample()])
    instrument = Instrument(two_theta_min_deg=10.0, two_theta_max_deg=80.0, step_deg=0.02)
    agent = Agent(classifier, instrument=instrument)  # fit the Kα1/Kα2 doublet the detector measures
    detector = PowderDetector(name="detector", changer=changer, instrument=instrument,
                              time_scale=time_scale, rng=np.random.default_rng(seed))
    samples = list(DEMO_SAMPLES[:n_samples])
    RE = RunEngine({})
    t0 = time.perf_counter()
    with Catalog(directory / "catalog") as cat:
        RE.subscribe(cat.writer)
        RE.subscribe(LiveAssessmentTable(console))
        (uid,) = RE(symmetry_scan(detector, samples=samples, changer=changer, count_time=1.0,
                                  max_count_time=30.0, agent=agent,
                                  md={"demo": True, "model_untrained": untrained}))
        n = len(cat[uid]["symmetry"].read()["time"])
    console.print(f"run {uid}: {n} assessments in {time.perf_counter() - t0:.1f} s (model {agent.model_id}"
                  f"{', untrained' if untrained else ''})")
    console.print(f"data: embedded tiled catalog in {directory / 'catalog'}")
    console.print("read it back:\n"
                  "  from ratagent.catalog import Catalog\n"
                  f"  with Catalog({str(directory / 'catalog')!r}) as cat:\n"
                  f"      run = cat[{uid!r}]\n"
                  "      run['primary'].read()    # frames\n"
                  "      run['symmetry'].read()   # assessments")
    return uid

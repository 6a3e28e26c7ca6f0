"""Fine-tuning source from the experiment catalog: labelled runs in, unlabelled runs skipped."""

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count

from ratagent.catalog import Catalog
from ratagent.crystallography import sg_to_eg
from ratagent.instrument import Instrument
from sim_beamline import PowderDetector, hard_sample
from training.finetune import CatalogSource

pytestmark = pytest.mark.slow


def test_catalog_source_yields_every_frame_of_labelled_runs(tmp_path):
    instrument = Instrument(two_theta_min_deg=10.0, two_theta_max_deg=80.0, step_deg=0.02)
    det = PowderDetector(name="det", instrument=instrument, time_scale=0.0, rng=np.random.default_rng(0))
    det.sample = hard_sample()
    with Catalog(tmp_path / "catalog") as cat:
        RE = RunEngine({})
        RE.subscribe(cat.writer)
        RE(count([det], num=3, md={"space_group": 62}))  # a reference sample of known symmetry
        RE(count([det], num=2))  # an unknown sample: never a label
        items = list(CatalogSource(cat, detector="det"))
    assert len(items) == 3
    assert {it.eg for it in items} == {sg_to_eg(62)}
    pattern = items[0].pattern
    np.testing.assert_allclose(pattern.two_theta, instrument.two_theta)
    assert pattern.wavelength == pytest.approx(instrument.wavelength)
    assert pattern.intensity.max() > 0

"""Shared fixtures: the measured dev set shipped with the project (``training/data``)."""

from pathlib import Path

import numpy as np
import pytest

from training.devsplit import DEV_SET


@pytest.fixture(scope="session")
def dev_set_path() -> Path:
    """``training/data/rruff_dev.npz`` (its provenance: ``training/data/PROVENANCE.md``)."""
    return DEV_SET


@pytest.fixture(scope="session")
def rruff_dev(dev_set_path):
    with np.load(dev_set_path) as z:
        return {k: z[k] for k in z.files}

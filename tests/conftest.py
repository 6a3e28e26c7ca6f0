"""Shared fixtures: paths to the project's shared reference data."""

from pathlib import Path

import numpy as np
import pytest

#: ``shared/`` beside the project's root (CI lays it there).
SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared/ not found beside the project at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def rruff_dev(shared_dir):
    with np.load(shared_dir / "data" / "rruff_dev.npz") as z:
        return {k: z[k] for k in z.files}

"""Fixtures of the live-loop tests."""

import numpy as np
import pytest

from sim_beamline import PowderDetector


class RecordingDetector(PowderDetector):
    """The simulated detector, keeping a copy of every frame it is read out with.

    ``reads[i]`` holds the reads of its ``i``-th exposure (trigger): an exposure that a
    pause cut short is triggered again and never read; one that is read twice gives the
    same frame twice.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.exposures = 0
        self.reads: dict[int, list[np.ndarray]] = {}

    def trigger(self):
        self.exposures += 1
        return super().trigger()

    def read(self):
        out = super().read()
        frame = np.array(out[self.intensity.name]["value"], copy=True)
        self.reads.setdefault(self.exposures, []).append(frame)
        return out

    def frames_read(self) -> list[np.ndarray]:
        """One frame per exposure read out, in order (every read of an exposure checked equal)."""
        frames = []
        for i, reads in sorted(self.reads.items()):
            assert all(r.shape == reads[0].shape and np.array_equal(r, reads[0], equal_nan=True)
                       for r in reads), f"exposure {i} was read out with different frames"
            frames.append(reads[0])
        return frames


@pytest.fixture
def recording_detector():
    """:class:`RecordingDetector`, the class."""
    return RecordingDetector

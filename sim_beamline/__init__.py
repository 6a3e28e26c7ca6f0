"""The simulated powder beamline: ophyd devices, a mineral library and the demo.

Importing is cheap; the simulator (torch) is loaded on the first frame.
"""

from sim_beamline.devices import FAULTS, PowderDetector, SampleChanger
from sim_beamline.minerals import MINERALS, Mineral, mineral, mineral_record
from sim_beamline.samples import Sample, hard_sample, mineral_sample

__all__ = [
    "FAULTS",
    "MINERALS",
    "Mineral",
    "PowderDetector",
    "Sample",
    "SampleChanger",
    "hard_sample",
    "mineral",
    "mineral_record",
    "mineral_sample",
]

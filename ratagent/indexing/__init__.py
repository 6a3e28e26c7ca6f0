"""Peak search and autoindexing: the unit cell from a powder pattern when none is given.

``find_peaks(pattern) -> PeakList`` and ``index(peaks_or_pattern) -> IndexingResult``;
see :mod:`ratagent.indexing.peaks` and :mod:`ratagent.indexing.indexing` for the methods
and their references.
"""

from ratagent.indexing.indexing import SEARCH_ORDER, CandidateCell, IndexingResult, index, line_tolerance
from ratagent.indexing.peaks import PeakList, find_peaks
from ratagent.indexing.reduction import niggli_cell, same_lattice
from ratagent.indexing.synthetic import lines_from_cell, perturb_lines

__all__ = [
    "SEARCH_ORDER",
    "CandidateCell",
    "IndexingResult",
    "PeakList",
    "find_peaks",
    "index",
    "line_tolerance",
    "lines_from_cell",
    "niggli_cell",
    "perturb_lines",
    "same_lattice",
]

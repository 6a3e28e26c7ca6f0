"""Space groups through gemmi: operations, settings, crystal systems and systematic absences.

No symmetry table is typed here: every operation and every reflection condition comes
from gemmi's space-group table (International Tables, vol. A settings).
"""

from __future__ import annotations

from functools import cache

import gemmi
import numpy as np

__all__ = [
    "CRYSTAL_SYSTEMS",
    "LATTICE_FAMILIES",
    "absence_signature",
    "crystal_system",
    "hkl_box",
    "lattice_family",
    "settings",
    "space_group",
    "systematically_absent",
]

#: The seven crystal systems, in order of increasing symmetry (also the bit order of
#: the 37-bit label).
CRYSTAL_SYSTEMS = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "trigonal",
    "hexagonal",
    "cubic",
)

#: Crystal system → lattice family (trigonal and hexagonal groups share the hexagonal
#: lattice and axes, so their absence sets are compared with each other).
LATTICE_FAMILIES = {
    "triclinic": "triclinic",
    "monoclinic": "monoclinic",
    "orthorhombic": "orthorhombic",
    "tetragonal": "tetragonal",
    "trigonal": "hexagonal",
    "hexagonal": "hexagonal",
    "cubic": "cubic",
}


def space_group(sg: int | str | gemmi.SpaceGroup) -> gemmi.SpaceGroup:
    """Return a gemmi space group from its number (1–230, standard setting) or H–M/Hall name.

    Raises
    ------
    ValueError
        If the number is outside 1–230 or gemmi does not know the name.
    TypeError
        If ``sg`` is neither an int, a str nor a ``gemmi.SpaceGroup``.
    """
    if isinstance(sg, gemmi.SpaceGroup):
        return sg
    if isinstance(sg, bool) or not isinstance(sg, int | np.integer | str):
        raise TypeError(f"space group must be a number 1–230 or a symbol, got {sg!r}")
    if isinstance(sg, str):
        found = gemmi.find_spacegroup_by_name(sg)
        if found is None:
            raise ValueError(f"unknown space-group symbol {sg!r}")
        return found
    if not 1 <= int(sg) <= 230:
        raise ValueError(f"space-group number must be in 1–230, got {sg}")
    return gemmi.find_spacegroup_by_number(int(sg))


def crystal_system(sg: int | str | gemmi.SpaceGroup) -> str:
    """Crystal system of a space group, one of :data:`CRYSTAL_SYSTEMS` (gemmi's classification)."""
    return space_group(sg).crystal_system_str()


def lattice_family(system: str) -> str:
    """Lattice family of a crystal system (trigonal → hexagonal); see :data:`LATTICE_FAMILIES`."""
    try:
        return LATTICE_FAMILIES[system]
    except KeyError:
        raise ValueError(f"unknown crystal system {system!r}; expected one of {CRYSTAL_SYSTEMS}") from None


def _as_hkl(hkl: np.ndarray) -> np.ndarray:
    arr = np.asarray(hkl)
    if arr.ndim == 1 and arr.shape[0] == 3:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"hkl must have shape (n, 3), got {np.shape(hkl)}")
    if not np.issubdtype(arr.dtype, np.integer):
        rounded = np.rint(arr)
        if not np.array_equal(rounded, arr):
            raise ValueError("hkl must be integers")
        arr = rounded
    return np.ascontiguousarray(arr, dtype=np.int32)


def systematically_absent(sg: int | str | gemmi.SpaceGroup, hkl: np.ndarray) -> np.ndarray:
    """Whether each reflection hkl is systematically absent in a space group.

    A reflection is systematically absent when, for some operation (R, t) of the group
    with hR = h, the phase factor exp(2πi h·t) ≠ 1, so that F(hkl) = 0 whatever the atoms
    (International Tables A, §1.6.4). Evaluated by gemmi over all operations, including
    the centring translations. The number form means the standard setting; pass a
    symbol (e.g. ``"P 1 1 21/b"``) or a ``gemmi.SpaceGroup`` for another setting.

    Parameters
    ----------
    sg : int, str or gemmi.SpaceGroup
    hkl : array of int, shape (n, 3) or (3,)

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    ops = space_group(sg).operations()
    return np.asarray(ops.systematic_absences(_as_hkl(hkl)), dtype=bool)


@cache
def hkl_box(hmax: int) -> np.ndarray:
    """All hkl with |h|,|k|,|l| ≤ hmax except 000, shape ((2·hmax+1)³ − 1, 3), int32."""
    if hmax < 1:
        raise ValueError(f"hmax must be ≥ 1, got {hmax}")
    r = np.arange(-hmax, hmax + 1)
    box = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    box = box[np.any(box != 0, axis=1)].astype(np.int32)
    box.setflags(write=False)
    return box


def absence_signature(sg: int | str | gemmi.SpaceGroup, hmax: int = 8) -> bytes:
    """A hashable fingerprint of the absence set of one setting over the hkl box ≤ hmax.

    Two settings have the same signature exactly when they forbid the same reflections
    in the box. All reflection conditions of the 230 groups have periods ≤ 4 (d-glides),
    so a box of 8 already separates every distinct condition set.
    """
    return np.packbits(systematically_absent(sg, hkl_box(hmax))).tobytes()


@cache
def settings(sg_number: int) -> tuple[gemmi.SpaceGroup, ...]:
    """All settings of a space group that gemmi tabulates, standard first.

    Settings on rhombohedral axes (``:R``) are left out: rhombohedral groups are handled,
    as in the paper, on hexagonal axes in the obverse setting (``:H``), where R centring
    gives −h + k + l = 3n.
    """
    standard = space_group(sg_number)
    found = [sg for sg in gemmi.spacegroup_table() if sg.number == sg_number and sg.ext != "R"]
    found.sort(key=lambda s: s.xhm() != standard.xhm())
    return tuple(found)

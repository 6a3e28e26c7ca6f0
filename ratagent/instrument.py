"""The :class:`Instrument`: what the diffractometer does to a powder pattern.

One description shared by the simulator, the Pawley engine and the simulated beamline,
so that all of them speak the same physics. Bottom layer: imports nothing of ours but
:mod:`ratagent.patterns`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ratagent.patterns import ANODE_KA1_ANGSTROM, CU_KA1_ANGSTROM, Pattern, QGrid

__all__ = ["CU_KA2_ANGSTROM", "CU_KA2_RATIO", "KBETA_ANGSTROM", "RADIATIONS", "Instrument", "radiation_lines",
           "reading_wavelength", "stated_instrument", "tch_mix"]

#: Cu Kα2 wavelength in Å (Hölzer et al. 1997: 1.544 427 Å).
CU_KA2_ANGSTROM = 1.5444
#: Kα2/Kα1 intensity ratio for Cu (Hölzer et al. 1997 give 0.50–0.52; 0.5 is the usual value).
CU_KA2_RATIO = 0.5

#: Kα1 and Kα2 wavelengths (Å) of the usual X-ray tube anodes, with the Kα2/Kα1 ratio (Kα1:
#: :data:`ratagent.patterns.ANODE_KA1_ANGSTROM`).
#: Cr, Fe, Co, Cu: Hölzer, Fritsch, Deutsch, Härtwig & Förster, Phys. Rev. A 56, 4554
#: (1997); Mo, Ag: International Tables for Crystallography Vol. C, Table 4.2.2.1
#: (Deslattes et al.). Cu Kα1 is the 1.5406 Å that laboratory software writes (and the
#: measured dev set states). The ratio is the 2p₃/₂ : 2p₁/₂ occupancy, 2 : 1.
RADIATIONS: dict[str, tuple[float, float, float]] = {
    "Cr": (ANODE_KA1_ANGSTROM["Cr"], 2.293651, 0.5),
    "Fe": (ANODE_KA1_ANGSTROM["Fe"], 1.939973, 0.5),
    "Co": (ANODE_KA1_ANGSTROM["Co"], 1.792835, 0.5),
    "Cu": (CU_KA1_ANGSTROM, CU_KA2_ANGSTROM, CU_KA2_RATIO),
    "Mo": (ANODE_KA1_ANGSTROM["Mo"], 0.713607, 0.5),
    "Ag": (ANODE_KA1_ANGSTROM["Ag"], 0.563798, 0.5),
}


#: Kβ1 wavelength (Å) of each anode: λ = hc/E from the Kβ1 emission energies of the X-ray
#: Data Booklet (LBNL, Table 1-2, after Bearden, Rev. Mod. Phys. 39, 78 (1967)). A β filter
#: or a graded mirror leaves about 1 % of it; monochromated data have none.
KBETA_ANGSTROM: dict[str, float] = {
    "Cr": 2.08492, "Fe": 1.75665, "Co": 1.62083, "Cu": 1.39225, "Mo": 0.63230, "Ag": 0.49708,
}


def radiation_lines(
    radiation: str, wavelength_angstrom: float | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(wavelengths Å, ratios) of a radiation: an anode (``"Cu"``, Kα1/Kα2) or ``"mono"``.

    ``"mono"`` is one line at ``wavelength_angstrom`` (a synchrotron or a Kα1
    monochromator). Names are case-insensitive; ``"CuKa"``, ``"Cu Kα"`` and ``"Cu-Ka12"``
    name the Cu doublet.

    Raises
    ------
    ValueError
        An unknown radiation, ``"mono"`` without a positive wavelength, or an anode whose
        Kα1 differs from a given ``wavelength_angstrom`` by more than 0.5 %.
    """
    key = str(radiation).strip()
    lam = wavelength_angstrom
    if _is_one_line(key):
        if lam is None or not (math.isfinite(lam) and lam > 0):
            raise ValueError(f"radiation {radiation!r} needs a positive wavelength, got {lam!r}")
        return (float(lam),), (1.0,)
    element = key[:2].capitalize().rstrip("-_ ")
    if element not in RADIATIONS or key[len(element):].strip(" -_").lower() not in (
            "", "ka", "kα", "ka12", "kα12", "ka1ka2", "kα1kα2", "k-alpha"):
        raise ValueError(f"unknown radiation {radiation!r}: give one of {', '.join(RADIATIONS)} "
                         "(Kα1/Kα2 of that anode) or 'mono' with a wavelength")
    ka1, ka2, ratio = RADIATIONS[element]
    if wavelength_angstrom is not None and abs(wavelength_angstrom / ka1 - 1) > 0.005:
        raise ValueError(f"wavelength {wavelength_angstrom} Å is not {element} Kα1 ({ka1} Å); "
                         "for another wavelength use radiation 'mono'")
    return (ka1, ka2), (1.0, ratio)


def _is_one_line(radiation: str) -> bool:
    return radiation.strip().lower() in ("mono", "monochromatic", "synchrotron")


def reading_wavelength(radiation: str | None, wavelength_angstrom: float | None) -> float | None:
    """The wavelength to read a pattern file at: ``wavelength_angstrom``, else the Kα1 of an
    anode ``radiation``; None when neither gives one (the file's header must).

    Raises
    ------
    ValueError
        An unknown radiation, or an anode whose Kα1 is not ``wavelength_angstrom``
        (:func:`radiation_lines`).
    """
    if radiation is None or _is_one_line(radiation):
        return wavelength_angstrom
    return radiation_lines(radiation, wavelength_angstrom)[0][0]


def tch_mix(gamma_g, gamma_l):
    """Thompson–Cox–Hastings total FWHM Γ and (unclipped) Lorentzian fraction η.

    Γ⁵ = Γ_G⁵ + 2.69269 Γ_G⁴Γ_L + 2.42843 Γ_G³Γ_L² + 4.47163 Γ_G²Γ_L³ + 0.07842 Γ_GΓ_L⁴ + Γ_L⁵,
    η = 1.36603 q − 0.47719 q² + 0.11116 q³,  q = Γ_L / Γ  (J. Appl. Cryst. 20, 79 (1987)).

    Arithmetic only, so it serves numpy arrays (Pawley) and torch tensors (renderer) alike;
    callers clip η to [0, 1] with their own library.
    """
    gg, gl = gamma_g, gamma_l
    g5 = (
        gg**5
        + 2.69269 * gg**4 * gl
        + 2.42843 * gg**3 * gl**2
        + 4.47163 * gg**2 * gl**3
        + 0.07842 * gg * gl**4
        + gl**5
    )
    fwhm = g5**0.2
    q = gl / fwhm
    return fwhm, 1.36603 * q - 0.47719 * q * q + 0.11116 * q**3


@dataclass(frozen=True)
class Instrument:
    """Diffractometer geometry, radiation and peak-shape parameters.

    Profile conventions follow GSAS (Thompson, Cox & Hastings, J. Appl. Cryst. 20, 79
    (1987)): Gaussian FWHM² = U tan²θ + V tanθ + W, Lorentzian FWHM = X / cosθ + Y tanθ,
    here in degrees² and degrees of 2θ.
    """

    wavelengths_angstrom: tuple[float, ...] = (CU_KA1_ANGSTROM, CU_KA2_ANGSTROM)  # λ of each line, Å
    line_ratios: tuple[float, ...] = (1.0, CU_KA2_RATIO)  # relative intensity of each line
    two_theta_min_deg: float = 5.0  # first 2θ point, degrees
    two_theta_max_deg: float = 90.0  # last 2θ point, degrees
    step_deg: float = 0.01  # 2θ step, degrees
    zero_shift_deg: float = 0.0  # added to every Bragg 2θ, degrees
    displacement_mm: float = 0.0  # sample height error s (Bragg–Brentano), mm
    goniometer_radius_mm: float = 240.0  # R, mm; displacement shift Δ2θ = -2 s cosθ / R (rad)
    monochromator_2theta_deg: float = 0.0  # 2θ_M of a monochromator (0: none), degrees
    u_deg2: float = 0.004  # Caglioti U, degrees²
    v_deg2: float = -0.002  # Caglioti V, degrees²
    w_deg2: float = 0.002  # Caglioti W, degrees²
    x_deg: float = 0.02  # Lorentzian X (size broadening) / cosθ, degrees
    y_deg: float = 0.01  # Lorentzian Y (strain broadening) tanθ, degrees
    asymmetry: float = 0.0  # Bérar–Baldinozzi-like low-angle asymmetry coefficient (dimensionless)

    def __post_init__(self) -> None:
        if len(self.wavelengths_angstrom) == 0:
            raise ValueError("Instrument needs at least one wavelength")
        if len(self.wavelengths_angstrom) != len(self.line_ratios):
            raise ValueError(
                f"wavelengths_angstrom {self.wavelengths_angstrom} and line_ratios "
                f"{self.line_ratios} differ in length"
            )
        for w in self.wavelengths_angstrom:
            if not (math.isfinite(w) and 0.0 < w <= 20.0):
                raise ValueError(f"wavelength {w!r} Å is not in (0, 20]")
        if any(r < 0 for r in self.line_ratios) or self.line_ratios[0] <= 0:
            raise ValueError(f"line_ratios must be non-negative, the first positive: {self.line_ratios}")
        if not 0.0 < self.two_theta_min_deg < self.two_theta_max_deg < 180.0:
            raise ValueError(
                f"2θ range {self.two_theta_min_deg}–{self.two_theta_max_deg}° is not within (0, 180)"
            )
        if not self.step_deg > 0:
            raise ValueError(f"step_deg must be positive, got {self.step_deg}")

    @classmethod
    def synchrotron(cls, wavelength_angstrom: float, **kwargs: float) -> Instrument:
        """A single-line instrument (no Kα2), e.g. a synchrotron beamline at λ Å."""
        return cls(wavelengths_angstrom=(wavelength_angstrom,), line_ratios=(1.0,), **kwargs)

    @classmethod
    def for_radiation(cls, radiation: str, wavelength_angstrom: float | None = None,
                      **kwargs: float) -> Instrument:
        """An instrument with the lines of ``radiation`` (:func:`radiation_lines`)."""
        waves, ratios = radiation_lines(radiation, wavelength_angstrom)
        return cls(wavelengths_angstrom=waves, line_ratios=ratios, **kwargs)

    @property
    def anode(self) -> str | None:
        """The tube anode whose Kα1/Kα2 lines these are (``"Cu"``), else None (one line: mono)."""
        for element, (ka1, ka2, ratio) in RADIATIONS.items():
            if self.wavelengths_angstrom == (ka1, ka2) and self.line_ratios == (1.0, ratio):
                return element
        return None

    @property
    def kbeta_angstrom(self) -> float | None:
        """The Kβ1 wavelength of the anode (:data:`KBETA_ANGSTROM`), Å; None for one line (mono)."""
        anode = self.anode
        return None if anode is None else KBETA_ANGSTROM[anode]

    @property
    def radiation(self) -> str:
        """The radiation in words: ``"Cu Kα1/Kα2"`` for a known anode, else ``"mono 0.7293 Å"``."""
        if self.anode is not None:
            return f"{self.anode} Kα1/Kα2"
        lines = " + ".join(f"{w:.5g} Å" for w in self.wavelengths_angstrom)
        return f"mono {lines}" if len(self.wavelengths_angstrom) == 1 else lines

    @property
    def wavelength(self) -> float:
        """The principal wavelength (Kα1 for a tube), Å."""
        return self.wavelengths_angstrom[0]

    @property
    def two_theta(self) -> np.ndarray:
        """The 2θ grid in degrees, shape (n_points,)."""
        n = int(round((self.two_theta_max_deg - self.two_theta_min_deg) / self.step_deg)) + 1
        return self.two_theta_min_deg + self.step_deg * np.arange(n)

    def with_(self, **changes: float) -> Instrument:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def from_grid(cls, grid: QGrid) -> Instrument:
        """A Kα1/Kα2 instrument whose 2θ grid is the given model grid."""
        return cls(
            two_theta_min_deg=grid.two_theta_min_deg,
            two_theta_max_deg=grid.two_theta_max_deg,
            step_deg=grid.step_deg,
        )


def stated_instrument(pattern: Pattern, radiation: str | None = None) -> tuple[Instrument, str, Pattern]:
    """The instrument of a pattern read from a file, where its radiation came from, and the
    pattern at that radiation's wavelength.

    ``radiation`` (an anode, or ``"mono"``: one line at the pattern's wavelength) when
    given, else the anode its file header names (``meta["radiation"]``; ``"mono"`` where
    the header says Kα1 alone), else one line. A tube's Kα1 must be within 0.5 % of the
    pattern's wavelength (:func:`radiation_lines`), and the pattern returned has that
    Kα1 as its wavelength (a file may state the Kα mean, 1.5418 Å for Cu, while its peaks
    are fitted as the doublet from Kα1). A header's anode whose Kα1 is not the wavelength
    (one given in its place) is left aside: one line at that wavelength.

    Returns ``(instrument, source, pattern)``, ``source`` one of ``"given"``, ``"file
    header"``, ``"one line: the file header's Cu does not match λ"`` and ``"none named:
    one line"``.

    Raises
    ------
    ValueError
        An unknown radiation, or a given anode whose Kα1 is not the wavelength; the message
        names the pattern's file.
    """
    header = pattern.meta.get("radiation")
    if radiation is not None:
        name, source = radiation, "given"
    elif header:
        name, source = header, "file header"
    else:
        name, source = "mono", "none named: one line"
    try:
        inst = Instrument.for_radiation(name, pattern.wavelength)
    except ValueError as exc:
        if radiation is not None or not header:
            where = pattern.meta.get("source", "pattern")
            raise ValueError(f"{where}: {exc} (radiation {source})") from None
        inst = Instrument.for_radiation("mono", pattern.wavelength)
        source = f"one line: the file header's {header} does not match λ"
    if inst.wavelength != pattern.wavelength:
        pattern = replace(pattern, wavelength=inst.wavelength)
    return inst, source, pattern

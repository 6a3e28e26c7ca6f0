"""Peak search on synthetic patterns with known peak positions (pseudo-Voigt, Kα2, Poisson)."""

import numpy as np
import pytest

from ratagent.indexing import find_peaks
from ratagent.indexing.background import rachinger_strip, snip_background
from ratagent.indexing.peaks import kbeta_satellites, pseudo_voigt
from ratagent.instrument import CU_KA2_ANGSTROM, Instrument
from ratagent.patterns import CU_KA1_ANGSTROM, Pattern

POSITIONS = np.array([18.3, 27.45, 31.8, 31.91, 45.6, 53.9, 56.55, 66.2, 75.3, 84.1])
SHOULDER = 31.91  # 1.4 FWHM beside a peak five times stronger: no maximum of its own
HEIGHTS = np.array([900.0, 400.0, 1500.0, 300.0, 2000.0, 250.0, 700.0, 500.0, 350.0, 600.0])


def _pattern(rng, alpha2: bool, fwhm=0.08, background=200.0):
    x = np.arange(10.0, 90.0, 0.01)
    y = background + 40.0 * np.exp(-(x - 10) / 30.0)
    for p, h in zip(POSITIONS, HEIGHTS, strict=True):
        area = h * fwhm * 1.2
        y = y + pseudo_voigt(x, p, area, fwhm, 0.4)
        if alpha2:
            p2 = 2 * np.degrees(np.arcsin(np.sin(np.radians(p / 2)) * CU_KA2_ANGSTROM / CU_KA1_ANGSTROM))
            y = y + 0.5 * pseudo_voigt(x, p2, area, fwhm, 0.4)
    return Pattern(x, rng.poisson(y).astype(float), CU_KA1_ANGSTROM)


@pytest.mark.parametrize("alpha2", [False, True])
def test_positions_recovered_within_a_fraction_of_the_step(alpha2):
    rng = np.random.default_rng(3)
    pat = _pattern(rng, alpha2)
    peaks = find_peaks(pat, instrument=Instrument() if alpha2 else None)
    # every true peak found once, within 0.3 of the 0.01° step for single-line data
    tol = 0.003 if not alpha2 else 0.006
    # with Kα2 the shoulder sits on the Kα2 line of its neighbour (Δ2θ ≈ 0.08°): not required
    expected = POSITIONS[POSITIONS != SHOULDER] if alpha2 else POSITIONS
    for p in expected:
        d = np.abs(peaks.two_theta - p)
        assert d.min() < (tol if p != SHOULDER else 0.02), (p, d.min())
    assert len(peaks) <= len(POSITIONS) + 1
    j = np.abs(peaks.two_theta[:, None] - expected[None, :]).argmin(axis=0)
    err = np.abs(peaks.two_theta[j] - expected)
    # the reported uncertainties are of the size of the errors (none claims 0)
    assert np.all(peaks.two_theta_sigma[j] > 0)
    assert np.all(err < 5 * peaks.two_theta_sigma[j] + 0.002)


def test_shoulder_flagged_and_widths():
    peaks = find_peaks(_pattern(np.random.default_rng(4), False))
    i = np.argmin(np.abs(peaks.two_theta - SHOULDER))
    assert peaks.shoulder[i]
    assert not peaks.shoulder[np.argmin(np.abs(peaks.two_theta - 45.6))]
    assert np.allclose(peaks.fwhm, 0.08, rtol=0.25)
    assert np.allclose(peaks.d, CU_KA1_ANGSTROM / (2 * np.sin(np.radians(peaks.two_theta / 2))))


def test_snip_background_keeps_a_smooth_background_and_removes_peaks():
    x = np.arange(2000.0)
    bg = 100 + 0.02 * x
    y = bg + 1000 * np.exp(-0.5 * ((x - 1000) / 4) ** 2)
    est = snip_background(y, 20)
    assert np.max(np.abs(est - bg)[50:-50]) < 3.0


def test_rachinger_removes_the_alpha2_line():
    x = np.arange(20.0, 60.0, 0.01)
    p2 = 2 * np.degrees(np.arcsin(np.sin(np.radians(20.0)) * CU_KA2_ANGSTROM / CU_KA1_ANGSTROM))
    y = pseudo_voigt(x, 40.0, 10.0, 0.1, 0.3) + 0.5 * pseudo_voigt(x, p2, 10.0, 0.1, 0.3)
    out = rachinger_strip(x, y, CU_KA2_ANGSTROM / CU_KA1_ANGSTROM, 0.5)
    assert np.max(np.abs(out - pseudo_voigt(x, 40.0, 10.0, 0.1, 0.3))) < 0.02 * y.max()


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"min_snr": 0.0}, "min_snr"),
        ({"matched_snr": float("nan")}, "matched_snr"),
        ({"fwhm_deg": -1.0}, "fwhm_deg"),
        ({"instrument": Instrument(), "alpha2": (1.5444, 0.5)}, "either"),
    ],
)
def test_bad_arguments_raise(kwargs, word):
    with pytest.raises(ValueError, match=word):
        find_peaks(_pattern(np.random.default_rng(0), False), **kwargs)


def test_instrument_wavelength_must_match():
    pat = _pattern(np.random.default_rng(0), False)
    with pytest.raises(ValueError, match="wavelength"):
        find_peaks(pat, instrument=Instrument.synchrotron(0.7))


def test_matched_filter_finds_weak_lines_and_few_false_ones():
    """Lines of 2.5 % of the strongest on a background of 100 counts (peak height ≈ 10σ
    of the smoothed counts, ≈ 4σ per point) are found far more often than by the second
    derivative alone, and the Poisson background gives at most a stray line or two."""
    rng = np.random.default_rng(11)
    x = np.arange(10.0, 90.0, 0.01)
    weak = np.array([24.0, 39.0, 52.5, 71.0])
    found = {"matched": 0, "d2": 0}
    for _ in range(5):
        y = 100.0 + pseudo_voigt(x, 60.0, 2000 * 0.08 * 1.2, 0.08, 0.4)
        for p in weak:
            y = y + pseudo_voigt(x, p, 50 * 0.08 * 1.2, 0.08, 0.4)
        pat = Pattern(x, rng.poisson(y).astype(float), CU_KA1_ANGSTROM)
        for key, kwargs in (("matched", {}), ("d2", {"matched_snr": 1e9})):
            peaks = find_peaks(pat, **kwargs)
            found[key] += sum(np.abs(peaks.two_theta - p).min() < 0.02 for p in weak)
            assert len(peaks) <= len(weak) + 1 + 2
    assert found["matched"] >= 16, found  # of 20
    assert found["d2"] <= found["matched"] - 4, found


def test_wide_filters_find_lines_broader_than_the_strongest(monkeypatch):
    """Lines three times as wide as the strongest one (a high-angle line, a finer-grained
    second phase) at 3 % of its height: the filters matched to the strongest line's width
    sum only their tops; the wider ones find them, and add no stray lines on the background."""
    import ratagent.indexing.peaks as peaks_module

    rng = np.random.default_rng(5)
    x = np.arange(10.0, 90.0, 0.01)
    broad = np.array([33.0, 47.5, 61.0, 78.0])
    found = {"wide": 0, "narrow": 0}
    wide = peaks_module._BROAD_SCALES
    for _ in range(5):
        y = 100.0 + pseudo_voigt(x, 20.0, 2000 * 0.07 * 1.2, 0.07, 0.4)
        for p in broad:
            y = y + pseudo_voigt(x, p, 60 * 0.21 * 1.2, 0.21, 0.4)
        pat = Pattern(x, rng.poisson(y).astype(float), CU_KA1_ANGSTROM)
        for key, scales in (("wide", wide), ("narrow", ())):
            monkeypatch.setattr(peaks_module, "_BROAD_SCALES", scales)
            peaks = find_peaks(pat)
            found[key] += sum(np.abs(peaks.two_theta - p).min() < 0.03 for p in broad)
            assert len(peaks) <= len(broad) + 1 + 1
    assert found["wide"] >= 18, found  # of 20
    assert found["narrow"] <= found["wide"] - 8, found


def test_broad_lines_of_measured_dev_pattern_262_are_found(rruff_dev):
    """RRUFF dev pattern 262 (Cu Kα1/Kα2, normalised to 1000): beside a 0.07° strongest
    line, lines of 3–6 % at 54.9° and 85.4° are about 0.2° wide; a search matched to the
    strongest line's width alone missed them and found 5 lines in all."""
    pat = Pattern(rruff_dev["two_theta"], rruff_dev["intensity"][262].astype(float), CU_KA1_ANGSTROM)
    peaks = find_peaks(pat, instrument=Instrument())
    for line in (26.16, 33.95, 39.67, 53.80, 54.92, 56.16, 85.44):
        assert np.abs(peaks.two_theta - line).min() < 0.05, (line, np.round(peaks.two_theta, 2))
    assert len(peaks) <= 14


def _kbeta(two_theta_deg, kbeta_angstrom):
    return 2 * np.degrees(np.arcsin(np.sin(np.radians(two_theta_deg / 2)) * kbeta_angstrom / CU_KA1_ANGSTROM))


def test_kbeta_lines_of_a_filtered_tube_are_dropped_and_the_kalpha_lines_kept():
    """A Ni-filtered Cu tube leaves Kβ1 lines at a few per cent of their Kα1 parents, 2θ
    lower by about 10 %; with the anode known they are not peaks of the phase."""
    rng = np.random.default_rng(8)
    kb = Instrument().kbeta_angstrom
    base = _pattern(rng, True)
    x, y = base.two_theta, base.intensity.copy()
    fwhm = 0.08
    for p, h in zip(POSITIONS, HEIGHTS * 4, strict=True):  # strong lines: their satellites stand out
        y += rng.poisson(pseudo_voigt(x, p, h * fwhm * 1.2, fwhm, 0.4)) + rng.poisson(
            pseudo_voigt(x, _kbeta(p, kb), 0.025 * h * fwhm * 1.2, fwhm, 0.4))
    pat = Pattern(x, y, CU_KA1_ANGSTROM)
    satellites = _kbeta(POSITIONS[HEIGHTS >= 900], kb)
    kept = find_peaks(pat, alpha2=(CU_KA2_ANGSTROM, 0.5), kbeta_angstrom=kb)
    seen = find_peaks(pat, alpha2=(CU_KA2_ANGSTROM, 0.5))
    assert all(np.abs(seen.two_theta - s).min() < 0.02 for s in satellites), seen.two_theta
    assert all(np.abs(kept.two_theta - s).min() > 0.05 for s in satellites), kept.two_theta
    for p in POSITIONS[POSITIONS != SHOULDER]:
        assert np.abs(kept.two_theta - p).min() < 0.01, p


def test_a_line_stronger_than_a_kbeta_satellite_is_kept_where_kbeta_would_fall():
    ratio = Instrument().kbeta_angstrom / CU_KA1_ANGSTROM
    parent = 45.0
    at_kbeta = _kbeta(parent, Instrument().kbeta_angstrom)
    tth = np.array([at_kbeta, at_kbeta + 3.0, parent])
    fwhm = np.full(3, 0.1)
    assert kbeta_satellites(tth, np.array([1.5, 1.5, 100.0]), fwhm, ratio).tolist() == [True, False, False]
    assert not kbeta_satellites(tth, np.array([10.0, 1.5, 100.0]), fwhm, ratio).any()
    with pytest.raises(ValueError, match="kbeta_ratio"):
        kbeta_satellites(tth, np.ones(3), fwhm, 1.1)
    pat = _pattern(np.random.default_rng(1), False)
    with pytest.raises(ValueError, match=r"kbeta_angstrom .* 1\.5406 Å, got 1\.6"):
        find_peaks(pat, kbeta_angstrom=1.6)


def test_kbeta_lines_of_measured_dev_pattern_378_are_dropped(rruff_dev):
    """RRUFF dev pattern 378 (Fm-3m, a = 6.29 Å): a line at 1.4 % of the strongest (200,
    28.38°) sits at 25.59°, where Cu Kβ1 puts 200; the indexing counted it as a strong
    line that its cubic cell left unindexed."""
    pat = Pattern(rruff_dev["two_theta"], rruff_dev["intensity"][378].astype(float), CU_KA1_ANGSTROM)
    assert np.abs(find_peaks(pat, alpha2=(CU_KA2_ANGSTROM, 0.5)).two_theta - 25.594).min() < 0.01
    peaks = find_peaks(pat, alpha2=(CU_KA2_ANGSTROM, 0.5), kbeta_angstrom=Instrument().kbeta_angstrom)
    assert np.abs(peaks.two_theta - 25.594).min() > 0.1
    assert np.abs(peaks.two_theta - 28.383).min() < 0.01


def test_kbeta_wavelengths_lie_below_kalpha_for_every_anode():
    from ratagent.instrument import KBETA_ANGSTROM, RADIATIONS

    assert set(KBETA_ANGSTROM) == set(RADIATIONS)
    # Kβ (3p → 1s) is 9–11 % shorter than Kα (2p → 1s), the more so the heavier the anode
    ratios = [KBETA_ANGSTROM[a] / RADIATIONS[a][0] for a in ("Cr", "Fe", "Co", "Cu", "Mo", "Ag")]
    assert all(0.88 < r < 0.92 for r in ratios), ratios
    assert ratios == sorted(ratios, reverse=True)
    assert Instrument().kbeta_angstrom == pytest.approx(1.3922, abs=1e-4)  # Cu Kβ1, 8.905 keV
    assert Instrument.synchrotron(0.7).kbeta_angstrom is None

"""Batched renderer and the full forward model: consistency, wavelengths, devices, errors."""

from __future__ import annotations

import math
from dataclasses import replace

import gemmi
import numpy as np
import pytest
import torch

from ratagent.instrument import CU_KA2_ANGSTROM, Instrument
from ratagent.patterns import Pattern
from ratagent.simulation import (
    AugmentationConfig,
    PatternParams,
    collate,
    crystal_from_sites,
    peak_table,
    random_record,
    reflection_list,
    render,
    renderer,
    simulate_batch,
    simulate_pattern,
)


@pytest.fixture(scope="module")
def records():
    rng = np.random.default_rng(11)
    return [random_record(rng, d_min=1.0) for _ in range(12)]


@pytest.fixture(scope="module")
def nacl():
    c = crystal_from_sites(
        225, [5.6402] * 3 + [90] * 3, [("Na", (0, 0, 0)), ("Cl", (0.5, 0.5, 0.5))], b_iso=0.8
    )
    return reflection_list(c, d_min=1.0, name="NaCl")


def test_batch_equals_one_by_one(records):
    inst = Instrument()
    together = render(collate(records), inst)
    for i, r in enumerate(records[:4]):
        alone = render(collate([r]), inst)[0]
        torch.testing.assert_close(together[i], alone, rtol=1e-5, atol=1e-6 * float(alone.max()))
    assert together.dtype == torch.float32 and together.shape == (12, 8501)


def test_the_cpu_render_runs_on_one_thread_and_restores_the_callers(records, monkeypatch):
    """On the CPU the renderer's steps run on one intra-op thread (faster there than two);
    the caller's thread count is back afterwards, after an error too."""
    batch, inst = collate(records), Instrument()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        seen = []
        original = renderer._render_rows

        def spy(*args):
            seen.append(torch.get_num_threads())
            return original(*args)

        monkeypatch.setattr(renderer, "_render_rows", spy)
        two = render(batch, inst)
        assert seen == [1] and torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert torch.equal(render(batch, inst), two)
        torch.set_num_threads(2)
        monkeypatch.setattr(renderer, "_render_rows", lambda *a: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            render(batch, inst)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_float32_matches_float64(records):
    inst = Instrument()
    y32 = render(collate(records[:4]), inst)
    y64 = render(collate(records[:4], dtype=torch.float64), inst)
    assert float((y32.double() - y64).abs().sum() / y64.abs().sum()) < 1e-4


def test_a_vanishing_reflection_leaves_the_pattern_finite(nacl):
    """Regression: a reflection with |F|² ~ 10⁻⁴² (a near-extinction of a random structure)
    overflowed its window coefficients and turned the whole pattern into NaN; training on a
    GPU stopped at torch.poisson's assertion. It is now left out, like any peak far below
    float32 resolution, and the rest of the pattern is unchanged."""
    f2 = nacl.f2.copy()
    f2[3] = 1e-42
    faint = replace(nacl, f2=f2)
    without = replace(nacl, hkl=np.delete(nacl.hkl, 3, 0), multiplicity=np.delete(nacl.multiplicity, 3),
                      d=np.delete(nacl.d, 3), f2=np.delete(nacl.f2, 3))
    inst = Instrument()
    rng = np.random.default_rng(0)
    noisy = simulate_batch([faint] * 4, inst, AugmentationConfig().sample(rng, 4), rng, impurities=[nacl])
    assert bool(torch.isfinite(noisy.expected).all()) and bool(torch.isfinite(noisy.counts).all())
    torch.testing.assert_close(render(collate([faint]), inst), render(collate([without]), inst))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
def test_cpu_and_gpu_agree(records):
    inst = Instrument()
    cpu = render(collate(records), inst)
    gpu = render(collate(records, device="cuda"), inst)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5 * float(cpu.max()))


def test_kalpha2_doublet_position_and_ratio(nacl):
    inst = Instrument(x_deg=0.0, y_deg=0.0, u_deg2=0.0, v_deg2=0.0, w_deg2=0.0004)
    y = render(collate([nacl], dtype=torch.float64), inst)[0].numpy()
    grid = inst.two_theta
    d200 = 5.6402 / 2
    for lam, ratio in ((1.5406, 1.0), (CU_KA2_ANGSTROM, 0.5)):
        pos = 2 * math.degrees(math.asin(lam / (2 * d200)))
        win = np.abs(grid - pos) < 0.03
        centroid = (grid[win] * y[win]).sum() / y[win].sum()
        assert centroid == pytest.approx(pos, abs=2e-3)
        if ratio == 1.0:
            area1 = y[win].sum()
        else:
            assert y[win].sum() / area1 == pytest.approx(0.5, rel=0.01)


@pytest.mark.parametrize("wavelength", [0.4959, 0.7093, 1.5406])
def test_single_line_any_wavelength(nacl, wavelength):
    inst = Instrument.synchrotron(wavelength, two_theta_min_deg=2.0, two_theta_max_deg=60.0)
    table = peak_table(
        collate([nacl], dtype=torch.float64),
        inst,
        PatternParams.from_instrument(inst, 1, dtype=torch.float64),
    )
    assert table["two_theta"].shape[-1] == 1
    d = gemmi.UnitCell(*nacl.cell).calculate_d_array(nacl.hkl)
    expected = 2 * np.degrees(np.arcsin(np.clip(wavelength / (2 * d), -1, 1)))
    got = table["two_theta"][0, :, 0].numpy()
    ok = table["valid"][0, :, 0].numpy()
    np.testing.assert_allclose(got[ok], expected[ok], atol=1e-9)


def test_zero_shift_moves_every_peak(nacl):
    inst = Instrument.synchrotron(1.5406, x_deg=0.0, y_deg=0.0)
    shifted = inst.with_(zero_shift_deg=0.1)
    p0 = peak_table(collate([nacl]), inst, PatternParams.from_instrument(inst, 1))["two_theta"]
    p1 = peak_table(collate([nacl]), shifted, PatternParams.from_instrument(shifted, 1))["two_theta"]
    torch.testing.assert_close(p1 - p0, torch.full_like(p0, 0.1), atol=1e-4, rtol=0)


def test_strained_cell_moves_peaks_keeps_f2(nacl):
    batch = collate([nacl], dtype=torch.float64)
    strained = batch.with_cell(batch.cell * torch.tensor([1.01, 1.01, 1.01, 1, 1, 1], dtype=torch.float64))
    inst = Instrument.synchrotron(1.5406)
    params = PatternParams.from_instrument(inst, 1, dtype=torch.float64)
    t0 = peak_table(batch, inst, params)["two_theta_bragg"][0, :5, 0].numpy()
    t1 = peak_table(strained, inst, params)["two_theta_bragg"][0, :5, 0].numpy()
    sin_ratio = np.sin(np.radians(t0 / 2)) / np.sin(np.radians(t1 / 2))
    np.testing.assert_allclose(sin_ratio, 1.01, rtol=1e-10)  # Bragg: sinθ ∝ 1/d ∝ 1/a
    assert torch.equal(strained.f2, batch.f2)


def test_preferred_orientation_march_dollase_by_hand(nacl):
    """Axis [001], r = 0.7: (200) averages 2 equivalents with cosα = 1 and 4 with cosα = 0;
    every (111) equivalent has cos²α = 1/3."""
    r = 0.7
    inst = Instrument.synchrotron(1.5406)
    batch = collate([nacl, nacl], laue=True, dtype=torch.float64)
    params = PatternParams.from_instrument(inst, 2, dtype=torch.float64)
    params = PatternParams(**{**params.__dict__, "po_ratio": torch.tensor([1.0, r], dtype=torch.float64)})
    table = peak_table(batch, inst, params)
    ratio = (table["intensity"][1, :, 0] / table["intensity"][0, :, 0]).numpy()
    index = {tuple(sorted(np.abs(h))): i for i, h in enumerate(nacl.hkl)}
    assert ratio[index[(0, 0, 2)]] == pytest.approx((2 * r**-3 + 4 * r**1.5) / 6, rel=1e-9)
    assert ratio[index[(1, 1, 1)]] == pytest.approx((r * r / 3 + 2 / (3 * r)) ** -1.5, rel=1e-9)


def test_simulate_batch_reproducible_and_noisy(records):
    inst = Instrument()
    cfg = AugmentationConfig(impurity_probability=0.5, po_probability=0.5)
    runs = []
    for _ in range(2):
        rng = np.random.default_rng(5)
        cond = cfg.sample(rng, len(records))
        runs.append(simulate_batch(records, inst, cond, rng, impurities=records[:3]))
    torch.testing.assert_close(runs[0].counts, runs[1].counts, rtol=0, atol=0)
    out = runs[0]
    assert out.counts.shape == (len(records), 8501)
    assert torch.all(out.counts == torch.round(out.counts)) and torch.all(out.counts >= 0)
    # the strongest expected point is the drawn count level (plus background there)
    counts = torch.as_tensor(out.conditions.counts, dtype=torch.float32)
    assert torch.all(out.expected.amax(1) >= counts * 0.999)
    resid = (out.counts - out.expected) / out.expected.clamp(min=1).sqrt()
    assert float(resid.std()) == pytest.approx(1.0, abs=0.1)


def test_impurity_fraction_splits_integrated_intensity(nacl, records):
    inst = Instrument()
    cfg = AugmentationConfig(
        background=(0, 0),
        hump_height=(0, 0),
        po_probability=0.0,
        max_strain=0.0,
        impurity_probability=1.0,
        impurity_fraction=(0.25, 0.25),
    )
    rng = np.random.default_rng(0)
    cond = cfg.sample(rng, 1)
    cond = type(cond)(**{**cond.__dict__, "counts": np.array([np.inf])})
    alone = type(cond)(**{**cond.__dict__, "impurity_fraction": np.array([0.0])})
    mixed = simulate_batch([nacl], inst, cond, rng, impurities=[records[0]]).expected[0]
    main = simulate_batch([nacl], inst, alone, rng).expected[0]
    imp = simulate_batch([records[0]], inst, alone, rng).expected[0]
    # a quarter of the integrated intensity is the impurity's
    expected = 0.75 * main / main.sum() + 0.25 * imp / imp.sum()
    torch.testing.assert_close(mixed / mixed.sum(), expected, rtol=1e-4, atol=1e-7)


def test_processed_patterns_look_like_published_database_files(nacl):
    """RRUFF-style: background gone, maximum = 1000, integers; raw rows untouched."""
    inst = Instrument()
    cfg = AugmentationConfig(
        background=(0.2, 0.2), hump_height=(0.1, 0.1), log10_counts=(4, 4), po_probability=0.0, max_strain=0.0
    )
    rng = np.random.default_rng(3)
    cond = cfg.sample(rng, 2)
    assert cond.processed is None  # not drawn unless asked for: older configs keep their streams
    cond = type(cond)(**{**cond.__dict__, "processed": np.array([1000.0, 0.0])})
    out = simulate_batch([nacl, nacl], inst, cond, np.random.default_rng(4))
    processed, raw = out.counts
    assert float(processed.max()) == 1000.0
    assert torch.equal(processed, torch.round(processed)) and float(processed.min()) == 0.0
    # the background (≥ 20 % of the strongest peak in the raw row) is gone: the median point
    # of the processed row is counting noise around 0, while the raw row's is the background
    assert float(processed.median()) < 10.0
    assert float(raw.median()) > 0.15 * float(raw.max())
    with pytest.raises(ValueError, match="processed_probability"):
        AugmentationConfig(processed_probability=1.5)
    drawn = AugmentationConfig(processed_probability=1.0).sample(np.random.default_rng(0), 3)
    np.testing.assert_array_equal(drawn.processed, [1000.0] * 3)


def test_simulate_pattern_returns_pattern(nacl):
    inst = Instrument()
    p = simulate_pattern(
        nacl,
        inst,
        np.random.default_rng(0),
        counts=5000,
        background=(0.05, 0.01),
        hump_height=0.02,
        po_ratio=0.9,
        strain=0.002,
    )
    assert isinstance(p, Pattern)
    assert p.wavelength == inst.wavelength and len(p) == 8501
    assert p.sigma is not None and p.meta["sg_number"] == 225
    clean = simulate_pattern(nacl, inst, np.random.default_rng(0))
    assert clean.intensity.max() == pytest.approx(1.0) and clean.sigma is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"counts": -5.0}, "-5.0"),
        ({"impurity_fraction": 0.2}, "0.2"),
        ({"po_ratio": 0.0}, "po_ratio"),
        ({"po_axis": (1, 0)}, "po_axis"),
        ({"strain": 0.5}, "0.5"),
    ],
)
def test_simulate_pattern_bad_input(nacl, kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_pattern(nacl, Instrument(), np.random.default_rng(0), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"zero_shift_deg": (0.1, -0.1)}, "zero_shift_deg"),
        ({"po_probability": 1.5}, "po_probability"),
        ({"impurity_fraction": (0.5, 1.5)}, "impurity_fraction"),
        ({"max_strain": 0.3}, "0.3"),
        ({"n_chebyshev": 0}, "n_chebyshev"),
    ],
)
def test_augmentation_config_bad_ranges(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentationConfig(**kwargs)


def test_render_bad_input(records):
    with pytest.raises(ValueError, match="at least one record"):
        collate([])
    with pytest.raises(ValueError, match="cells"):
        collate(records[:2], cells=np.ones((3, 6)))
    batch = collate(records[:2])
    with pytest.raises(ValueError, match="rows"):
        render(batch, Instrument(), PatternParams.from_instrument(Instrument(), 3))
    with pytest.raises(ValueError, match="impurities"):
        cond = AugmentationConfig(impurity_probability=1.0).sample(np.random.default_rng(0), 2)
        simulate_batch(records[:2], Instrument(), cond, np.random.default_rng(0))


def _reference_render(table, instrument, asymmetry, window_fwhm):
    """The windowed pseudo-Voigt sum written out peak by peak (float64 numpy), from the
    columns of peak_table: the renderer's module docstring, step 4, without its batching."""
    from scipy.special import erf

    from ratagent.simulation.renderer import _WINDOW_BUCKETS

    start, step, n = instrument.two_theta_min_deg, instrument.step_deg, len(instrument.two_theta)
    grid = start + step * np.arange(n)
    buckets = np.array(_WINDOW_BUCKETS)
    k_g = 4 * math.log(2)
    cols = {k: table[k].numpy().astype(float).reshape(len(asymmetry), -1) for k in table}
    out = np.zeros((len(asymmetry), n))
    for b in range(len(asymmetry)):
        peaks = zip(*(cols[k][b] for k in ("two_theta", "intensity", "fwhm", "eta")), strict=True)
        for tth, inten, g, e in peaks:
            if inten == 0 or not np.isfinite(tth):
                continue
            need = min(max(math.ceil(window_fwhm * g / step), 1), buckets[-1])
            centre = round((tth - start) / step)
            if centre + need < 0 or centre - need > n - 1:
                continue
            kw = buckets[np.searchsorted(buckets, need)]
            nd_n = min(max(math.ceil(min(window_fwhm, 3.0) * g / step), 1), buckets[-1])
            kn = min(buckets[np.searchsorted(buckets, nd_n)], kw)
            off = centre * step + start - tth
            hw, hn = (kw + 0.5) * step, (kn + 0.5) * step
            area_l = (math.atan(2 * (off + hw) / g) - math.atan(2 * (off - hw) / g)) / math.pi
            k_e = 2 * math.sqrt(math.log(2))
            area_g = 0.5 * (erf(k_e * (off + hn) / g) - erf(k_e * (off - hn) / g))
            scale = inten / g / (e * area_l + (1 - e) * area_g)
            a_l, a_g = e * scale * 2 / math.pi, (1 - e) * scale * 2 * math.sqrt(math.log(2) / math.pi)
            for j in range(centre - kw, centre + kw + 1):
                if 0 <= j < n:
                    out[b, j] += a_l / (1 + 4 * ((grid[j] - tth) / g) ** 2)
            p_t = 2 * asymmetry[b] / math.tan(math.radians(tth) / 2)
            for j in range(centre - kn, centre + kn + 1):
                if 0 <= j < n:
                    z = (grid[j] - tth) / g
                    val = a_g * math.exp(-k_g * z * z)
                    if asymmetry[b] != 0:
                        factor = max(1 - p_t * z * math.exp(-z * z), 0.0)
                        val = val * factor + a_l / (1 + 4 * z * z) * (factor - 1)
                    out[b, j] += val
    return out


@pytest.mark.parametrize("window_fwhm", [8.0, 3.0])
def test_render_matches_a_peak_by_peak_reference(records, window_fwhm):
    """The batched, windowed renderer against the same sum written out peak by peak, with
    per-pattern widths, shifts, asymmetry and texture, in float64. Where the asymmetry factor
    clips to 0 the value is a Lorentzian minus itself, so rounding is relative to that."""
    inst = Instrument()
    b = 6
    batch = collate(records[:b], laue=True, dtype=torch.float64)
    p = PatternParams.from_instrument(inst, b, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    rand = lambda: torch.rand(b, generator=g, dtype=torch.float64)  # noqa: E731
    p = PatternParams(
        **{
            **p.__dict__,
            "scale": 1 + 9 * rand(),
            "zero_shift_deg": 0.05 * (rand() - 0.5),
            "u": 0.02 * rand(),
            "w": 0.001 + 0.01 * rand(),
            "x": 0.1 * rand(),
            "asymmetry": torch.where(rand() < 0.5, 0.05 * rand(), 0.0),
            "po_ratio": torch.where(rand() < 0.5, 0.6 + 0.8 * rand(), 1.0),
        }
    )
    for params in (p, PatternParams(**{**p.__dict__, "asymmetry": torch.zeros(b, dtype=torch.float64)})):
        got = render(batch, inst, params, window_fwhm=window_fwhm).numpy()
        want = _reference_render(peak_table(batch, inst, params), inst, params.asymmetry.numpy(), window_fwhm)
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-12 * want.max())

"""The anode's Kβ1 line in simulated patterns: where Bragg's law puts it, how strong, and
that the peak search's Kβ filter finds it."""

from __future__ import annotations

from dataclasses import replace

import gemmi
import numpy as np
import pytest
import torch

from ratagent.indexing import find_peaks
from ratagent.instrument import KBETA_ANGSTROM, Instrument
from ratagent.simulation import (
    AugmentationConfig,
    PatternParams,
    RenderPool,
    collate,
    crystal_from_sites,
    peak_table,
    reflection_list,
    render,
    simulate_pattern,
)


@pytest.fixture(scope="module")
def periclase():
    """MgO, rock salt, a = 4.2112 Å: its strong 200 line at 42.9° Cu Kα1 has Kβ1 at 38.6°."""
    c = crystal_from_sites(225, [4.2112] * 3 + [90] * 3, [("Mg", (0, 0, 0)), ("O", (0.5, 0.5, 0.5))],
                           b_iso=0.5)
    return reflection_list(c, d_min=1.0, name="MgO")


def _with_kbeta(params: PatternParams, ratio: float) -> PatternParams:
    return replace(params, kbeta=torch.full_like(params.scale, ratio))


def test_kbeta_is_one_more_line_where_bragg_puts_it_with_its_ratio(periclase):
    """Kβ1 at 2 asin(λ_β / 2d) with d from gemmi; its integrated intensity is the ratio times
    the Kα1 line's, times LP(2θ_β) / LP(2θ_α1) = (1 + cos²2θ) / (sin²θ cosθ), no monochromator."""
    inst = Instrument()
    batch = collate([periclase], dtype=torch.float64)
    params = PatternParams.from_instrument(inst, 1, dtype=torch.float64)
    table = peak_table(batch, inst, _with_kbeta(params, 0.01))
    assert table["two_theta"].shape[-1] == 3
    d = np.asarray(gemmi.UnitCell(*periclase.cell).calculate_d_array(periclase.hkl))
    beta = 2 * np.degrees(np.arcsin(KBETA_ANGSTROM["Cu"] / (2 * d)))
    np.testing.assert_allclose(table["two_theta"][0, :, 2].numpy(), beta, atol=1e-9)

    def lp(tth: np.ndarray) -> np.ndarray:
        t = np.radians(tth / 2)
        return (1 + np.cos(2 * t) ** 2) / (np.sin(t) ** 2 * np.cos(t))

    alpha = table["two_theta"][0, :, 0].numpy()
    ratio = (table["intensity"][0, :, 2] / table["intensity"][0, :, 0]).numpy()
    np.testing.assert_allclose(ratio, 0.01 * lp(beta) / lp(alpha), rtol=1e-9)
    without = peak_table(batch, inst, params)
    torch.testing.assert_close(without["intensity"], table["intensity"][..., :2])


def test_a_zero_ratio_renders_as_no_kbeta(periclase):
    inst = Instrument()
    batch = collate([periclase, periclase])
    params = PatternParams.from_instrument(inst, 2)
    assert torch.equal(render(batch, inst, _with_kbeta(params, 0.0)), render(batch, inst, params))
    mixed = replace(params, kbeta=torch.tensor([0.0, 0.02]))
    y = render(batch, inst, mixed)
    torch.testing.assert_close(y[0], render(batch, inst, params)[0])  # summed in another order
    two_theta = torch.as_tensor(inst.two_theta)
    near = (two_theta > 38.3) & (two_theta < 38.9)  # Kβ1 of 200
    assert float(y[1, near].max()) > 100 * float(y[0, near].max())


def test_the_render_pool_carries_kbeta(periclase):
    inst = Instrument()
    batch = collate([periclase] * 4)
    params = _with_kbeta(PatternParams.from_instrument(inst, 4), 0.03)
    with RenderPool(2) as pool:
        got = pool.render(batch, inst, params)
    torch.testing.assert_close(got, render(batch, inst, params))


def test_kbeta_needs_an_anode_and_a_ratio_below_one(periclase):
    mono = Instrument.synchrotron(0.7293)
    with pytest.raises(ValueError, match=r"kbeta needs an anode.*mono 0\.7293"):
        render(collate([periclase]), mono, _with_kbeta(PatternParams.from_instrument(mono, 1), 0.01))
    inst = Instrument()
    with pytest.raises(ValueError, match=r"kbeta must be a Kβ1/Kα1 ratio in \[0, 1\), got \[1\.5\]"):
        render(collate([periclase]), inst, _with_kbeta(PatternParams.from_instrument(inst, 1), 1.5))
    with pytest.raises(ValueError, match="kbeta must be a Kβ1/Kα1 ratio range"):
        AugmentationConfig(kbeta=(0.0, 1.2))
    with pytest.raises(ValueError, match="kbeta must be a Kβ1/Kα1 ratio in"):
        simulate_pattern(periclase, inst, np.random.default_rng(0), kbeta=-0.1)


def test_conditions_draw_kbeta_only_where_configured():
    """Without a Kβ range the draws are those of a configuration that has no such field, so
    earlier training configurations keep their random streams."""
    plain = AugmentationConfig().sample(np.random.default_rng(3), 64)
    assert plain.kbeta is None and plain.params("cpu", torch.float32).kbeta is None
    drawn = AugmentationConfig(kbeta=(0.005, 0.03)).sample(np.random.default_rng(3), 64)
    assert np.all((drawn.kbeta >= 0.005) & (drawn.kbeta <= 0.03))
    np.testing.assert_array_equal(drawn.counts, plain.counts)


def test_the_peak_search_drops_the_simulated_kbeta_satellites(periclase):
    """β-filtered (1 % Kβ1): without the anode's Kβ1 wavelength the peak search finds the
    satellites of the strongest lines (111, 200) where Bragg's law puts them; with it, it drops them."""
    inst = Instrument()
    pattern = simulate_pattern(periclase, inst, np.random.default_rng(5), counts=3e4, background=(0.002,),
                               kbeta=0.01)
    d = np.asarray(gemmi.UnitCell(*periclase.cell).calculate_d_array(periclase.hkl))
    beta = 2 * np.degrees(np.arcsin(KBETA_ANGSTROM["Cu"] / (2 * d)))
    strongest = [i for i, h in enumerate(periclase.hkl) if sorted(np.abs(h)) in ([1, 1, 1], [0, 0, 2])]

    def satellites(peaks) -> int:
        return sum(bool(np.any(np.abs(peaks.two_theta - beta[i]) < 0.03)) for i in strongest)

    assert satellites(find_peaks(pattern, instrument=inst)) == 2
    assert satellites(find_peaks(pattern, instrument=inst, kbeta_angstrom=KBETA_ANGSTROM["Cu"])) == 0

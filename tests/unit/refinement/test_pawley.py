"""Pawley fits of simulated patterns: refined cell, Rwp against Rexp, honest bad-input errors."""

import numpy as np
import pytest

from ratagent.instrument import Instrument
from ratagent.patterns import Pattern
from ratagent.refinement import PawleyConfig, pawley_fit

from .conftest import make_case


@pytest.mark.slow
@pytest.mark.parametrize(("sg", "seed"), [(225, 1), (141, 2), (14, 3)])
def test_cell_within_0p05_percent_on_clean_data(sg, seed, instrument):
    case = make_case(sg, counts=None, seed=seed)
    res = pawley_fit(case.pattern, case.start_cell, case.eg, instrument)
    assert res.converged, res.message
    rel = np.abs(np.asarray(res.cell) - case.true_cell) / case.true_cell
    assert rel.max() < 5e-4, (res.cell, case.true_cell)
    assert abs(res.zero_shift_deg) < 5e-3


@pytest.mark.slow
def test_rwp_close_to_rexp_for_the_true_eg(instrument):
    case = make_case(62, counts=2e4, seed=4)
    res = pawley_fit(case.pattern, case.start_cell, case.eg, instrument)
    assert res.converged, res.message
    assert res.rwp < 1.05 * res.rexp
    assert 0.9 < res.chi2_reduced < 1.1
    assert res.n_params == res.n_refl + 6 + res.reflections.lattice.n_params + 7
    assert res.bic == pytest.approx(res.chi2 + res.n_params * np.log(res.n_obs))
    assert (res.intensity >= 0).all()


def test_the_fit_reports_its_parameters_with_uncertainties_and_correlations(instrument):
    case = make_case(62, counts=2e4, seed=5)  # orthorhombic: three metric parameters
    res = pawley_fit(case.pattern, case.start_cell, case.eg, instrument)
    names = ["g1", "g2", "g3", "zero", "U", "V", "W", "X", "Y", "P"]
    assert list(res.fit.params) == names
    a_true = case.true_cell[0]
    g1 = res.fit.params["g1"]
    assert g1.value == pytest.approx(1 / a_true**2, rel=1e-3)  # 1/d² = g1 h² + g2 k² + g3 l²
    assert 0 < g1.stderr < 1e-4 * g1.value
    report = res.fit_report()
    assert "[[Variables]]" in report and "[[Correlations]]" in report and "zero:" in report


def _pattern(n=2000):
    tt = np.linspace(10, 80, n)
    return Pattern(tt, np.ones(n) + 10.0 * np.exp(-(((tt - 30.0) / 0.1) ** 2)), 1.5406)


@pytest.mark.parametrize(
    ("cell", "eg", "match"),
    [
        ((5.0, 5.0, 5.0, 90.0, 90.0), 94, "six numbers"),
        ((5.0, 5.0, -5.0, 90.0, 90.0, 90.0), 94, "positive"),
        ((5.0, 5.0, 5.0, 90.0, 90.0, 90.0), 100, "1–99"),
        ((5.0, 5.0, 5.0, 90.0, 90.0, 90.0), 0, "1–99"),
        ((5.0, 6.0, 7.0, 90.0, 100.0, 90.0), 94, "metric of EG 94"),
    ],
)
def test_bad_input_raises_naming_the_value(cell, eg, match):
    with pytest.raises(ValueError, match=match):
        pawley_fit(_pattern(), cell, eg)


def test_pattern_too_short_and_wrong_wavelength():
    short = Pattern(np.linspace(20, 30, 100), np.ones(100), 1.5406)
    with pytest.raises(ValueError, match="points"):
        pawley_fit(short, (3.0, 3.0, 3.0, 90, 90, 90), 99, config=PawleyConfig(n_background=30))
    with pytest.raises(ValueError, match="wavelength"):
        pawley_fit(_pattern(), (5.0, 5.0, 5.0, 90, 90, 90), 94, Instrument.synchrotron(0.7))


@pytest.mark.parametrize(("sg", "seed"), [(14, 3), (194, 5)])
def test_the_jacobian_is_the_derivative_of_the_fit_residual(sg, seed, instrument):
    """Golub–Pereyra's derivative of the variable-projection residual, against central
    differences, at a start that is not the optimum (its residual is large), with
    asymmetry and every parameter free."""
    from ratagent.refinement import linear, stages
    from ratagent.refinement.pawley import eg_reflections

    case = make_case(sg, counts=1e4, seed=seed, instrument=instrument)
    config = PawleyConfig()
    cell = np.asarray(case.start_cell, float)
    (_, refl), *_ = eg_reflections(case.eg, case.pattern, instrument, cell, config)
    prob = stages.Problem(case.pattern, instrument, refl, config, cell)
    theta = stages.start_theta(prob, instrument)
    theta[-1] = 0.05  # asymmetry P
    group, ne, x, passive, _ = stages.solve(prob, theta)
    jac = prob.jacobian(theta, group, 1.0, ne, x, passive)

    def residual(t):
        ne_t = prob.normal(*stages.split(prob, t), group)
        return ne_t.weighted_residual(linear.solve_passive(ne_t.matrix, ne_t.rhs, passive))

    steps = np.r_[prob.g_scale, 0.01, 1e-3, 1e-3, 1e-3, 1e-2, 1e-2, 1e-2] * 1e-3
    for k, name in enumerate(stages.parameter_names(prob)):
        up, down = theta.copy(), theta.copy()
        up[k] += steps[k]
        down[k] -= steps[k]
        numeric = (residual(up) - residual(down)) / (2 * steps[k])
        err = np.linalg.norm(jac[:, k] - numeric) / np.linalg.norm(numeric)
        assert err < 2e-2, f"∂r/∂{name}: relative error {err:.1e}"

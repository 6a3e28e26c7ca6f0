"""Classifier: wavelength handling, masking of the unmeasured range, batching."""

from __future__ import annotations

import numpy as np
import pytest

from ratagent.model.calibration import Calibration, EGPosterior
from ratagent.model.inference import Classifier, load
from ratagent.patterns import Pattern, q_from_two_theta

CU, MO = 1.5406, 0.7093


def _profile(q: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fixed 'pattern' as a function of Q: Gaussian peaks on a flat background."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.5, 5.5, 25)
    heights = rng.uniform(50, 1000, 25)
    return 20.0 + (heights * np.exp(-0.5 * ((q[:, None] - centres) / 0.01) ** 2)).sum(1)


def _pattern(wavelength: float, tth_min: float, tth_max: float, seed: int = 0) -> Pattern:
    tth = np.arange(tth_min, tth_max, 0.005)
    return Pattern(tth, _profile(q_from_two_theta(tth, wavelength), seed), wavelength)


@pytest.fixture
def classifier(tiny_model):
    return Classifier(tiny_model(seed=4), Calibration(temperature=0.05), "tiny", batch_size=2)


def test_single_pattern_gives_one_posterior(classifier):
    post = classifier.predict(_pattern(CU, 4.99, 90.01))
    assert isinstance(post, EGPosterior)
    assert post.model_id == "tiny"
    assert post.probs.shape == (99,)
    assert post.meta["coverage"] == pytest.approx(1.0, abs=0.01)


def test_any_wavelength_sees_the_same_q_pattern(classifier):
    cu_pattern, mo_pattern = _pattern(CU, 4.99, 90.01), _pattern(MO, 2.0, 40.0)  # same Q range
    cu, mo = classifier.predict(cu_pattern), classifier.predict(mo_pattern)
    assert mo.meta["coverage"] == pytest.approx(1.0, abs=0.01)
    assert mo.argmax == cu.argmax
    # uncalibrated log-probabilities agree to the interpolation error of the resampling
    np.testing.assert_allclose(
        classifier.scores(*classifier.resample([mo_pattern])),
        classifier.scores(*classifier.resample([cu_pattern])),
        atol=1e-4,
    )


def test_unmeasured_q_range_is_masked_not_invented(classifier):
    short = _pattern(MO, 2.0, 20.0)  # reaches only about Q = 3.1 Å⁻¹ of the grid's 5.8
    post = classifier.predict(short)
    assert 0.3 < post.meta["coverage"] < 0.7
    intensity, mask = classifier.resample([short])
    assert not mask[0, -1] and mask[0, 0]
    tampered = intensity.copy()
    tampered[~mask] = 1e6
    np.testing.assert_allclose(classifier.predict_arrays(tampered, mask)[0].probs, post.probs, atol=1e-6)


def test_batches_equal_single_predictions(classifier):
    patterns = [_pattern(CU, 5.0, 90.0, seed=s) for s in range(5)]
    batched = classifier.predict(patterns)  # batch_size=2: three forward passes
    assert len(batched) == 5
    for pattern, post in zip(patterns, batched, strict=True):
        # float32 sums in another order, amplified 20-fold by T = 0.05
        np.testing.assert_allclose(classifier.predict(pattern).probs, post.probs, atol=1e-4)
    assert classifier.predict([]) == []


def test_bad_input(classifier):
    with pytest.raises(ValueError, match="covers"):
        classifier.predict(_pattern(CU, 80.0, 90.0))
    with pytest.raises(TypeError, match="expected a Pattern"):
        classifier.predict([np.zeros(10)])
    with pytest.raises(ValueError, match="shape"):
        classifier.scores(np.zeros((1, 10)))


def test_load_from_a_saved_checkpoint(tmp_path, tiny_model):
    from ratagent.model.checkpoint import save

    model = tiny_model(seed=4)
    model_id = save(model, Calibration(temperature=2.0), tmp_path / "c")
    clf = load(tmp_path / "c")
    post = clf.predict(_pattern(CU, 4.99, 90.01))
    assert post.model_id == model_id
    expected = Classifier(model, Calibration(temperature=2.0)).predict(_pattern(CU, 4.99, 90.01))
    np.testing.assert_allclose(post.probs, expected.probs, atol=1e-7)

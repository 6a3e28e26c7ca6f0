"""A tiny ViT trained for a few hundred steps learns cubic lattice centring from peak positions.

The data are textbook facts, generated here with numpy (independent of the simulator):
cubic reflections lie at sin²θ = λ² N / (4a²) with N = h² + k² + l², and the lattice
centring decides which N occur (International Tables A, reflection conditions):

* P (EG 81, P - -): every N that is a sum of three squares (no 7, 15, 23, 28, …);
* I (EG 89, I - -): h + k + l even, i.e. even N (2, 4, 6, …, 14, 16, …);
* F (EG 94, F - -): h, k, l all odd or all even: N = 3, 4, 8, 11, 12, 16, 19, 20, ….
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ratagent.crystallography import extinction_group

LAMBDA = 1.5406
A_RANGE = (4.0, 7.0)  # cubic cell edge a, Å
CLASSES = (81, 89, 94)  # cubic P, I, F extinction groups
CENTRING = ("P", "I", "F")


def _allowed_n(n_max: int = 80) -> list[np.ndarray]:
    h = np.arange(-9, 10)
    hkl = np.stack(np.meshgrid(h, h, h, indexing="ij"), -1).reshape(-1, 3)
    n = (hkl**2).sum(1)
    keep = (n > 0) & (n <= n_max)
    hkl, n = hkl[keep], n[keep]
    parity = hkl % 2
    body = hkl.sum(1) % 2 == 0
    face = (parity == parity[:, :1]).all(1)
    return [np.unique(n), np.unique(n[body]), np.unique(n[face])]


ALLOWED = _allowed_n()


def make_batch(rng: np.random.Generator, size: int, grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Cubic P/I/F patterns on ``grid``: Gaussian peaks, random a, intensities, noise."""
    s2 = grid.sin2theta  # (N,)
    two_theta = grid.two_theta
    cls = rng.integers(0, 3, size)
    out = np.empty((size, s2.size), np.float32)
    for i, c in enumerate(cls):
        a = rng.uniform(*A_RANGE)
        n = ALLOWED[c]
        s2_peaks = LAMBDA**2 * n / (4.0 * a**2)
        tth_peaks = np.degrees(2.0 * np.arcsin(np.sqrt(s2_peaks[s2_peaks < 0.5])))
        heights = rng.uniform(0.2, 1.0, tth_peaks.size)
        profile = heights * np.exp(-0.5 * ((two_theta[:, None] - tth_peaks) / 0.12) ** 2)
        out[i] = profile.sum(1) + 0.02 * rng.random(s2.size) + 0.05
    target = torch.as_tensor(np.asarray(CLASSES)[cls] - 1)
    return torch.from_numpy(out), target


def _train(model, steps: int, seed: int, grid, batch: int = 32) -> None:
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    model.train()
    for _ in range(steps):
        x, y = make_batch(rng, batch, grid)
        loss = model.loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def test_centring_rules_are_the_textbook_ones():
    p, i, f = (set(a[:12].tolist()) for a in ALLOWED)
    assert sorted(p) == [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13]
    assert sorted(i) == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24]
    assert sorted(f) == [3, 4, 8, 11, 12, 16, 19, 20, 24, 27, 32, 35]
    assert [extinction_group(eg).centring for eg in CLASSES] == list(CENTRING)


def test_training_is_deterministic_with_a_fixed_seed(tiny_model, tiny_grid, one_thread):
    a, b = tiny_model(seed=11), tiny_model(seed=11)
    _train(a, 5, seed=3, grid=tiny_grid, batch=8)
    _train(b, 5, seed=3, grid=tiny_grid, batch=8)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


@pytest.mark.slow
def test_tiny_model_learns_lattice_centring(tiny_model, tiny_grid, one_thread):
    model = tiny_model(seed=0)
    _train(model, steps=400, seed=1, grid=tiny_grid)
    x, y = make_batch(np.random.default_rng(12345), 600, tiny_grid)
    with torch.no_grad():
        pred = model(x).log_p.argmax(1) + 1
    true_c = [extinction_group(int(t) + 1).centring for t in y]
    pred_c = [extinction_group(int(e)).centring for e in pred]
    accuracy = np.mean([a == b for a, b in zip(true_c, pred_c, strict=True)])
    # the network must see the I-vs-P difference (N = 7 is absent in P) and F's 3:4 pair
    assert accuracy > 0.55, accuracy  # measured 0.72 (seeded); chance is 1/3

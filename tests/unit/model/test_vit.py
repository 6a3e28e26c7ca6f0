"""The network: shapes, masking, fusion and the split head's code matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ratagent.crystallography import labels
from ratagent.model.vit import (
    ViT,
    ViTConfig,
    _pool_factors,
    grid_peaks,
    normalise_intensity,
    split_log_probs,
)
from ratagent.patterns import MODEL_GRID

B = 3
N = 851  # points of the tiny grid (conftest)


def _batch(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, N, generator=g) * 1000.0


def test_default_config_is_the_shipped_grid():
    cfg = ViTConfig()
    assert cfg.grid == MODEL_GRID
    assert cfg.n_points == 8501
    assert cfg.n_tokens == 86  # ceil(8501 / 100): the last patch is padded and masked
    assert (cfg.n_eg, cfg.n_bits) == (99, 37)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("width", 33, "divisible"),
        ("depth", 0, "depth"),
        ("patch_size", 2.5, "patch_size"),
        ("pool", "max", "pool"),
        ("dropout", 1.0, "dropout"),
        ("intensity_transform", "cbrt", "intensity_transform"),
        ("peak_tokens", -1, "peak_tokens"),
        ("peak_frequencies", 0, "peak_frequencies"),
    ],
)
def test_config_rejects_bad_values(field, value, match, tiny_config):
    with pytest.raises(ValueError, match=match):
        tiny_config(**{field: value})


def test_config_round_trips_through_dict(tiny_config):
    cfg = tiny_config(pool="cls", physics_pe=False)
    assert ViTConfig.from_dict(cfg.to_dict()) == cfg
    peaks = tiny_config(peak_tokens=16, peak_frequencies=8)
    assert ViTConfig.from_dict(peaks.to_dict()) == peaks
    # without peak tokens the dict is the one written before the peak fields existed, so
    # the model ids of checkpoints saved then still match
    assert "peak_tokens" not in cfg.to_dict() and "peak_frequencies" not in cfg.to_dict()
    with pytest.raises(ValueError, match="unknown ViTConfig field"):
        ViTConfig.from_dict({**cfg.to_dict(), "colour": "red"})


@pytest.mark.parametrize("pool", ["mean", "cls", "flatten"])
@pytest.mark.parametrize("physics_pe", [True, False])
@pytest.mark.parametrize("stem", ["patch", "conv", "strided"])
def test_output_shapes_and_fusion_sums_to_one(pool, physics_pe, stem, tiny_model):
    model = tiny_model(pool=pool, physics_pe=physics_pe, stem=stem)
    with torch.no_grad():
        out = model(_batch())
    assert out.bit_logits.shape == (B, 37)
    assert out.aux_logits.shape == (B, 99)
    assert out.log_p_split.shape == (B, 99)
    assert out.log_p.shape == (B, 99)
    torch.testing.assert_close(out.log_p.exp().sum(1), torch.ones(B), rtol=0, atol=1e-5)
    torch.testing.assert_close(out.log_p_split.exp().sum(1), torch.ones(B), rtol=0, atol=1e-5)
    tokens, valid = model.forward_features(_batch())
    assert tokens.shape == (B, 86 + (pool == "cls"), 32)
    assert valid.shape == tokens.shape[:2]


def test_fusion_is_the_alpha_mixture_of_both_heads(tiny_model):
    model = tiny_model()
    with torch.no_grad():
        model.alpha_logit.fill_(0.7)
        out = model(_batch())
    alpha = 1.0 / (1.0 + np.exp(-0.7))
    expected = alpha * out.log_p_split.exp() + (1 - alpha) * out.aux_logits.softmax(1)
    torch.testing.assert_close(out.log_p.exp(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("pool", "stem", "peaks"), [("mean", "patch", 0), ("cls", "patch", 0),
                                                     ("flatten", "conv", 0), ("flatten", "strided", 0),
                                                     ("flatten", "strided", 12), ("cls", "conv", 12)])
def test_unmeasured_region_does_not_change_the_output(pool, stem, peaks, tiny_model):
    model = tiny_model(pool=pool, stem=stem, peak_tokens=peaks)
    x = _batch()
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[:, 600:] = False  # e.g. a short-wavelength pattern measured only to low Q
    mask[1, :45] = False  # a partially measured first patch, and a whole masked one
    y = x.clone()
    y[~mask] = torch.rand(int((~mask).sum())) * 1e6  # anything at all where unmeasured
    with torch.no_grad():
        a, b = model(x, mask), model(y, mask)
    torch.testing.assert_close(a.log_p, b.log_p, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.bit_logits, b.bit_logits, rtol=0, atol=1e-6)
    # ... while the measured region does matter
    z = x.clone()
    z[:, 100:110] += 5000.0
    with torch.no_grad():
        assert not torch.allclose(model(z, mask).log_p, a.log_p, atol=1e-6)


def test_output_is_invariant_to_intensity_scale_and_flat_background(tiny_model):
    model = tiny_model()
    x = _batch()
    with torch.no_grad():
        torch.testing.assert_close(model(x).log_p, model(37.0 * x).log_p, rtol=0, atol=1e-5)
        torch.testing.assert_close(model(x).log_p, model(x + 250.0).log_p, rtol=0, atol=1e-5)


def test_input_checks(tiny_model):
    model = tiny_model()
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="mask"):
        model(_batch(), torch.ones(B, N))  # float, not bool
    with pytest.raises(ValueError, match="no measured point"):
        model(_batch(), torch.zeros(B, N, dtype=torch.bool))


def test_normalise_intensity_removes_background_and_scales_to_unit_max():
    x = torch.tensor([[1.0, 2.0, 5.0, 17.0, 100.0]])
    m = torch.tensor([[True, True, True, True, False]])
    out = normalise_intensity(x, m, "sqrt", background_quantile=0.0)  # bg = min = 1, max = 17
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.25, 0.5, 1.0, 0.0]]))
    # the 10 % quantile of 1, 2, 5, 17 (linear interpolation) is 1.3
    out = normalise_intensity(x, m, "none", background_quantile=0.1)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.7, 3.7, 15.7, 0.0]]) / 15.7)


def test_padding_points_are_masked_tokens(tiny_model):
    model = tiny_model(patch_size=40)  # 851 points -> 22 tokens, the last with 11 real points
    x, valid = model.prepare_input(_batch())
    assert x.shape == (B, 3, 880)
    assert valid.all()
    assert (x[:, :, 851:] == 0).all()


def test_seeded_initialisation_is_reproducible(tiny_model):
    a, b = tiny_model(seed=5), tiny_model(seed=5)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.pos_embed, tiny_model(seed=6).pos_embed)


# --------------------------------------------------------------------------- split head codes


def test_code_matrix_rows_are_distinct_and_well_formed():
    c = labels.code_matrix()
    assert c.shape == (99, 37)
    assert len({row.tobytes() for row in c}) == 99
    assert (c[:, :7].sum(1) == 1).all()  # one crystal system
    assert (c[:, 7:12].sum(1) == 1).all()  # one centring


def test_split_decoding_of_each_code_returns_its_eg():
    c = torch.tensor(labels.code_matrix(), dtype=torch.float32)
    bit_logits = 8.0 * (2.0 * c - 1.0)  # confident bits equal to each EG's code
    log_p = split_log_probs(bit_logits, c)
    assert torch.equal(log_p.argmax(1), torch.arange(99))
    assert (log_p.exp().diagonal() > 0.99).all()


def test_split_log_probs_equal_softmax_of_labels_decode():
    rng = np.random.default_rng(3)
    probs = rng.uniform(0.05, 0.95, size=(4, 37))
    ll = labels.decode(probs)
    expected = (
        ll - np.log(np.exp(ll - ll.max(1, keepdims=True)).sum(1, keepdims=True)) - ll.max(1, keepdims=True)
    )
    logits = torch.as_tensor(np.log(probs / (1 - probs)), dtype=torch.float64)
    got = split_log_probs(logits, torch.tensor(labels.code_matrix(), dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-9)


def test_model_rejects_a_wrong_code_matrix(tiny_config):
    with pytest.raises(ValueError, match="code_matrix has shape"):
        ViT(tiny_config(), code_matrix=np.zeros((98, 37)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        ViT(tiny_config(), code_matrix=np.full((99, 37), 0.5))


def test_loss_is_finite_and_backpropagates_to_alpha(tiny_model):
    model = tiny_model().train()
    out = model(_batch())
    loss = model.loss(out, torch.tensor([3, 80, 93]))
    loss.backward()
    assert torch.isfinite(loss)
    assert model.alpha_logit.grad is not None and model.alpha_logit.grad != 0


@pytest.mark.parametrize(
    ("patch", "pools"), [(50, [5, 5, 2]), (64, [4, 4, 4]), (7, [7, 1, 1]), (1, [1, 1, 1])]
)
def test_pool_factors_multiply_to_the_patch_size(patch, pools):
    assert _pool_factors(patch) == pools
    assert int(np.prod(_pool_factors(patch, stages=4))) == patch


@pytest.mark.parametrize("stem", ["conv", "strided"])
def test_conv_stem_passes_the_pattern_at_the_scale_of_the_positional_encoding(stem, tiny_model):
    """The failure it fixes: with std-0.02 (or PyTorch-default) weights a deep stem's output
    hardly differs between patterns, and the transformer sees only the PE."""
    model = tiny_model(stem=stem)
    x = torch.zeros(B, N)
    for i, centre in enumerate((100, 300, 500)):  # one sharp peak per pattern, at different Q
        x[i, centre - 2 : centre + 3] = torch.tensor([0.2, 0.7, 1.0, 0.7, 0.2])
    with torch.no_grad():
        inp, _ = model.prepare_input(x + 0.01)
        tokens = model.patch_embed(inp)  # (B, D, T)
    between_patterns = tokens.std(dim=0).mean()
    # the failure left far less than the PE's scale; the conv stem gives about 6×, the strided
    # one about 5× (it takes no maximum over each pooling window)
    assert between_patterns > {"conv": 5, "strided": 3}[stem] * model.pos_embed.std()


@pytest.mark.parametrize("stem", ["conv", "strided"])
def test_conv_stem_learns_to_tell_patterns_apart_in_a_few_steps(stem, tiny_model):
    """Overfit four patterns with different peak positions (the signal reaches the heads)."""
    torch.manual_seed(0)
    model = tiny_model(stem=stem, pool="flatten").train()
    x = torch.zeros(4, N) + 1.0
    for i, centre in enumerate((120, 260, 410, 610)):
        x[i, centre : centre + 3] += 100.0
    target = torch.tensor([0, 40, 70, 98])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = model.loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert torch.equal(model.eval()(x).log_p.argmax(1), target)


@pytest.mark.parametrize("stem", ["conv", "strided"])
def test_the_tokens_a_peak_reaches_centre_on_its_own_patch(stem, tiny_model):
    """Each stem stage is aligned with the patches: the strided stages' windows (2s − 1 or
    2s points, padded by (k − s)/2) centre on the points that the pooled stages keep, so a
    peak in the middle of patch j reaches tokens j − r … j + r (before the stem's layer
    norm, which scales every token it reaches to one size)."""
    model = tiny_model(stem=stem)
    stages = model.patch_embed.net
    base = torch.ones(1, N)
    with torch.no_grad():
        ref = stages(model.prepare_input(base)[0][:, :1])[0]  # (D, T)
        for j in (7, 30, 61):
            for offset in (4, 5):
                x = base.clone()
                x[0, 10 * j + offset] += 50.0
                moved = (stages(model.prepare_input(x)[0][:, :1])[0] - ref).abs().sum(0)  # (T,)
                reached = torch.nonzero(moved > 1e-6).ravel()
                assert len(reached) > 1
                assert int(reached.min()) + int(reached.max()) == 2 * j, (j, offset, reached.tolist())


def test_system_term_is_the_nll_of_the_crystal_system_marginal(tiny_model):
    model = tiny_model()
    target = torch.tensor([3, 80, 93])
    with torch.no_grad():
        out = model(_batch())
        base = model.loss(out, target, (1.0, 1.0, 1.0))
        both = model.loss(out, target, (1.0, 1.0, 1.0, 2.0))
    probs = out.log_p.exp().numpy()
    system_of = labels.code_matrix()[:, :7].argmax(1)  # (99,) system index of each EG
    marginal = np.stack([probs[:, system_of == s].sum(1) for s in range(7)], axis=1)
    expected = -np.log(marginal[np.arange(3), system_of[target.numpy()]]).mean()
    assert float(both - base) == pytest.approx(2.0 * expected, rel=1e-5)
    with pytest.raises(ValueError, match="3 or 4"):
        model.loss(out, target, (1.0, 1.0))


@pytest.mark.parametrize(("field", "value"), [("stem", "fft"), ("pool", "max")])
def test_config_rejects_unknown_stem_and_pool(field, value, tiny_config):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_saved_configs_without_a_stem_are_patchify_networks_partial_ones_take_defaults(tiny_config):
    saved = tiny_config(stem="patch", pool="mean").to_dict()
    del saved["stem"], saved["stem_channels"], saved["flatten_dim"]  # as written before the conv stem
    assert ViTConfig.from_dict(saved, saved=True).stem == "patch"
    assert ViTConfig.from_dict({"depth": 3}).stem == ViTConfig().stem == "conv"  # a TOML [model] table


def test_system_term_needs_one_system_per_eg_in_the_code(tiny_config):
    code = np.array(labels.code_matrix(), dtype=np.float32)
    code[0, :7] = 0  # EG 1 without a crystal system
    model = ViT(tiny_config(), code_matrix=code)
    out = model(_batch())
    target = torch.tensor([3, 80, 93])
    assert torch.isfinite(model.loss(out, target, (1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="one-hot"):
        model.loss(out, target, (1.0, 1.0, 1.0, 1.0))


@pytest.mark.parametrize("pool", ["mean", "cls", "flatten"])
def test_peak_tokens_follow_the_patch_tokens(pool, tiny_model):
    model = tiny_model(pool=pool, peak_tokens=12)
    with torch.no_grad():
        out = model(_batch())
        tokens, valid = model.forward_features(_batch())
    torch.testing.assert_close(out.log_p.exp().sum(1), torch.ones(B), rtol=0, atol=1e-5)
    assert tokens.shape == (B, (pool == "cls") + 86 + 12, 32)
    assert valid.shape == tokens.shape[:2]
    # random intensities have more than 12 local maxima: every peak token is used
    assert valid.all()
    torch.testing.assert_close(model(_batch()).log_p, model(37.0 * _batch() + 250.0).log_p, rtol=0, atol=1e-5)


def _gaussians(centres, heights, n: int = N, sigma: float = 2.0) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64)
    return sum(h * torch.exp(-0.5 * ((i - c) / sigma) ** 2) for c, h in zip(centres, heights, strict=True))


def test_grid_peaks_finds_each_peak_to_a_fraction_of_a_grid_step():
    s2 = torch.linspace(0.01, 0.6, N, dtype=torch.float64) ** 1.2  # any monotonic, uneven grid
    centres, heights = (120.3, 431.75, 700.5), (0.4, 1.0, 0.7)
    x = _gaussians(centres, heights).unsqueeze(0)
    position, height, valid = grid_peaks(x, torch.ones_like(x, dtype=torch.bool), s2, 5)
    assert valid.tolist() == [[True, True, True, False, False]]
    order = [1, 2, 0]  # highest first
    truth = np.interp([centres[j] for j in order], np.arange(N), s2.numpy())
    step = np.interp([centres[j] for j in order], np.arange(N - 1), np.diff(s2.numpy()))
    np.testing.assert_array_less(np.abs(position[0, :3].numpy() - truth), 0.1 * step)
    # the heights of the smoothed pattern: the binomial kernel's variance is one grid step²
    smoothed = [heights[j] * 2.0 / np.sqrt(2.0**2 + 1.0) for j in order]
    np.testing.assert_allclose(height[0, :3].numpy(), smoothed, rtol=0.03)
    assert (position[0, 3:] == 0).all() and (height[0, 3:] == 0).all()


def test_grid_peaks_keeps_two_reflections_of_one_patch_apart():
    """Two lines 7 grid points apart (one 10-point patch) are two peaks, each where it is."""
    s2 = torch.linspace(0.0, 1.0, N)
    x = _gaussians((300.0, 307.0), (1.0, 0.8), sigma=1.5).float().unsqueeze(0)
    position, _, valid = grid_peaks(x, torch.ones_like(x, dtype=torch.bool), s2, 4)
    assert valid[0].tolist() == [True, True, False, False]
    np.testing.assert_allclose(position[0, :2].numpy() * (N - 1), [300.0, 307.0], atol=0.15)


def test_grid_peaks_ignores_unmeasured_points_and_checks_its_window():
    s2 = torch.linspace(0.0, 1.0, N)
    x = _gaussians((100.0, 500.0), (0.5, 1.0)).float().unsqueeze(0)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[:, 450:] = False
    position, _, valid = grid_peaks(x * mask, mask, s2, 3)
    assert valid[0].tolist() == [True, False, False]
    assert position[0, 0].item() * (N - 1) == pytest.approx(100.0, abs=0.1)
    with pytest.raises(ValueError, match="window"):
        grid_peaks(x, mask, s2, 3, window=4)


@pytest.mark.parametrize("index", [0, 115, 253])
def test_grid_peaks_finds_the_strong_lines_that_the_indexing_peak_search_finds(index, rruff_dev):
    """On measured RRUFF patterns the batched detector and the indexing's profile-fitting
    peak search (an independent method) agree on the strong lines: at least 13 of the 15
    strongest within 0.05° 2θ of one of the detector's 48 peaks."""
    from ratagent.indexing import find_peaks
    from ratagent.patterns import CU_KA1_ANGSTROM, Pattern, resample_to_q_grid

    pattern = Pattern(rruff_dev["two_theta"], rruff_dev["intensity"][index].astype(float), CU_KA1_ANGSTROM)
    y, m = resample_to_q_grid(pattern, MODEL_GRID)
    mask = torch.from_numpy(m)[None]
    x = normalise_intensity(torch.from_numpy(y).float()[None], mask)
    position, _, valid = grid_peaks(x, mask, torch.from_numpy(MODEL_GRID.sin2theta).float(), 48)
    found = np.degrees(2.0 * np.arcsin(np.sqrt(position[0][valid[0]].numpy())))
    lines = find_peaks(pattern)
    strong = np.asarray(lines.two_theta)[np.argsort(-np.asarray(lines.height))[:15]]
    assert (np.abs(strong[:, None] - found[None]).min(1) < 0.05).sum() >= 13

"""The physics-informed vision transformer for powder patterns, in one file (nanoGPT-style).

The network of the talk (``shared/reference/talk_…md``): a 1-D ViT over the model's fixed Q
grid with

1. a point-wise input of three channels: normalised intensity, the sin²θ coordinate channel
   ("where am I?") and the measured/unmeasured mask;
2. a stem that turns each patch of grid points into a token: the talk's patch embedding
   (one Conv1d with stride = patch size, ``stem="patch"``) or, by default, a small conv
   stem (conv + max-pool stages, intensity channel only; :class:`ConvStem`), because the
   patchify stem did not train on our CPU budget, or the same stages as strided
   convolutions (``stem="strided"``), which write a fifth of the activations;
3. a physics-aware positional encoding: a small MLP of each patch's centre sin²θ, added to
   a learned absolute PE (``physics_pe=False`` keeps only the learned PE, for ablation);
4. optionally (``peak_tokens=K``), a second token stream: the pattern's K highest peaks
   (:func:`grid_peaks`), one token each from its sin²θ to a fraction of a grid step and
   its height (:class:`PeakTokens`), beside the patch tokens in every block;
5. pre-LN transformer blocks (causal-free self-attention with ``scaled_dot_product_attention``)
   over the patch (and peak) tokens;
6. pooling (mean over measured patches, a CLS token, or "flatten": a linear map of all
   patch tokens' projected features, which keeps each feature's position, plus a map of
   the peak tokens' mean);
7. two heads: the 37-bit *split* head (crystal system, centring, glide/screw bits) and the
   99-way *auxiliary* head, fused into one EG distribution

       p = α · p_split + (1 − α) · p_aux,

   where p_split is the EG distribution the bit probabilities induce through the code matrix
   C (99 × 37): log p_split(e) = log_softmax_e Σ_b [C_eb log σ(z_b) + (1 − C_eb) log σ(−z_b)],
   and α = sigmoid(a) with ``a`` a learned scalar (initialised to 0, i.e. α = ½). Training
   learns α with the rest of the network; post-hoc calibration then acts on log p.

Unmeasured points (outside the measured Q range, see
:func:`ratagent.patterns.resample_to_q_grid`) are zeroed, flagged in the mask channel, and
patches with no measured point are removed from attention and pooling, so that whatever
the unmeasured region holds cannot change the output.

Shapes: B batch, N grid points, Np = N padded to a multiple of the patch size, T = Np / patch
tokens, D width, E = 99 EGs, K = 37 bits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ratagent.patterns import MODEL_GRID, QGrid

__all__ = [
    "PeakTokens",
    "ViT",
    "ViTConfig",
    "ViTOutput",
    "config_summary",
    "grid_peaks",
    "normalise_intensity",
    "split_log_probs",
]

#: The label code's first bits: the crystal system, one-hot (``crystallography.labels``).
N_SYSTEM_BITS = 7

#: The stems :class:`ViTConfig` knows (module docstring, step 2).
STEMS = ("conv", "strided", "patch")

#: :class:`ViTConfig` fields of the peak-token stream, left out of a network without it.
_PEAK_FIELDS = ("peak_tokens", "peak_frequencies")

#: Smallest intensity scale; a pattern whose measured maximum is below this is all zeros.
_EPS = 1e-12


@dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of :class:`ViT`; everything needed to rebuild the network."""

    grid: QGrid = MODEL_GRID  # input Q grid; n_points = grid.n_points (8501 for the shipped grid)
    patch_size: int = 100  # grid points per token; input is zero-padded (masked) to a multiple
    width: int = 96  # token embedding dimension D
    depth: int = 2  # number of transformer blocks
    heads: int = 4  # attention heads; width must be divisible by heads
    mlp_ratio: float = 4.0  # hidden size of each block's MLP = mlp_ratio * width
    dropout: float = 0.0  # dropout on attention weights, residual branches and PE (training)
    physics_pe: bool = True  # add MLP(patch-centre sin²θ) to the learned PE; False = learned PE only
    pe_hidden: int = 64  # hidden units of the sin²θ positional-encoding MLP
    pool: str = "flatten"  # "flatten": position-aware linear map of all tokens; "mean"; "cls"
    flatten_dim: int = 32  # per-token features kept by the "flatten" pool before its linear map
    # "conv": conv + max-pool stages; "strided": the same stages as strided convolutions;
    # "patch": one strided Conv1d per patch
    stem: str = "conv"
    stem_channels: int = 32  # channels of the first stem stage ("conv", "strided"; c, 2c, 3c, width)
    background_quantile: float = 0.1  # background = this quantile of the measured intensities
    intensity_transform: str = "sqrt"  # on (I − bg)/(max − bg): "sqrt", "log" or "none"
    # 0: patch tokens only; K > 0: also the K highest peaks of the pattern, one token each
    # (:class:`PeakTokens`), beside the patches in every block
    peak_tokens: int = 0
    peak_frequencies: int = 10  # Fourier features of a peak's sin²θ: 2⁰ … 2^(n−1) periods over the grid
    n_eg: int = 99  # extinction groups E (output index i is EG i + 1)
    n_bits: int = 37  # bits K of the split head's structured label code

    def __post_init__(self) -> None:
        if not isinstance(self.grid, QGrid):
            raise TypeError(f"grid must be a QGrid, got {type(self.grid).__name__}")
        for name in ("patch_size", "width", "depth", "heads", "pe_hidden", "peak_frequencies", "n_eg",
                     "n_bits"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ViTConfig.{name} must be a positive integer, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"ViTConfig.width={self.width} is not divisible by heads={self.heads}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"ViTConfig.mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ViTConfig.dropout must be in [0, 1), got {self.dropout!r}")
        k = self.peak_tokens
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise ValueError(f"ViTConfig.peak_tokens must be an integer ≥ 0, got {self.peak_tokens!r}")
        if self.stem not in STEMS:
            raise ValueError(f"ViTConfig.stem must be one of {STEMS}, got {self.stem!r}")
        if self.pool not in ("mean", "cls", "flatten"):
            raise ValueError(f"ViTConfig.pool must be 'mean', 'cls' or 'flatten', got {self.pool!r}")
        if not 0.0 <= self.background_quantile < 1.0:
            raise ValueError(
                f"ViTConfig.background_quantile must be in [0, 1), got {self.background_quantile!r}"
            )
        if self.intensity_transform not in ("sqrt", "log", "none"):
            raise ValueError(
                "ViTConfig.intensity_transform must be 'sqrt', 'log' or 'none', "
                f"got {self.intensity_transform!r}"
            )

    @property
    def n_points(self) -> int:
        """Grid points N of one input pattern."""
        return self.grid.n_points

    @property
    def n_tokens(self) -> int:
        """Patch tokens T = ceil(N / patch_size) (without a CLS token)."""
        return math.ceil(self.n_points / self.patch_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the grid as a nested dict).

        A network without peak tokens is written without the peak fields, as before they
        existed: its configuration, and so the model id of a checkpoint saved then, stay
        the same (:func:`ratagent.model.checkpoint.model_id_of`).
        """
        d = asdict(self)
        if not self.peak_tokens:
            for name in _PEAK_FIELDS:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, saved: bool = False) -> ViTConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a ``ValueError``.

        ``saved=True`` for a config written by :meth:`to_dict` (checkpoints, training
        states): one written before the conv stem existed has no ``stem`` and was a
        patchify network. A partial dict (a TOML ``[model]`` table) takes the defaults.
        """
        d = dict(d)
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ViTConfig field(s) {sorted(unknown)}; known: {sorted(known)}")
        if isinstance(d.get("grid"), dict):
            d["grid"] = QGrid(**d["grid"])
        if saved and "stem" not in d:  # saved before the conv stem existed: a patchify stem
            d["stem"] = "patch"
        return cls(**d)


class ViTOutput(NamedTuple):
    """What :meth:`ViT.forward` returns (all float32)."""

    bit_logits: torch.Tensor  # (B, K) split-head logits, one per label bit
    aux_logits: torch.Tensor  # (B, E) auxiliary-head logits
    log_p_split: torch.Tensor  # (B, E) log of the EG distribution induced by the bits
    log_p: torch.Tensor  # (B, E) log of the fused distribution α·p_split + (1−α)·p_aux


def normalise_intensity(
    intensity: torch.Tensor,
    mask: torch.Tensor,
    transform: str = "sqrt",
    background_quantile: float = 0.1,
) -> torch.Tensor:
    """Remove a flat background, scale to [0, 1] and compress the range, per pattern.

    With b the ``background_quantile`` quantile and M the maximum of the measured
    intensities, x = clip((I − b) / (M − b), 0, 1), then √x (``"sqrt"``),
    log(1 + 100x) / log 101 (``"log"``) or x (``"none"``); unmeasured points are 0.

    Why: dividing by the maximum makes the input independent of count time and detector
    gain; subtracting a low quantile takes away the flat background, so a token's input is
    its peaks (with the background left in, a tiny ViT trained on cubic P/I/F patterns stays
    at chance for 300 steps; without it, it learns); the square root keeps weak
    reflections, where systematic absences are decided, visible next to strong ones, as
    counting statistics scale. Only measured points enter b and M, so the unmeasured
    region cannot change the result.

    Parameters
    ----------
    intensity : Tensor, shape (B, N)
    mask : Tensor of bool, shape (B, N)
        True where measured; every row needs at least one measured point.
    transform : {"sqrt", "log", "none"}
    background_quantile : float in [0, 1)
        0 subtracts the minimum.
    """
    # quantile of the measured points (linear interpolation, as numpy's default): unmeasured
    # points sort last as +inf; torch.nanquantile is ~100x slower on CPU
    ordered = torch.where(mask, intensity, torch.full_like(intensity, torch.inf)).sort(dim=1).values
    pos = (mask.sum(dim=1, keepdim=True) - 1).to(intensity.dtype) * background_quantile  # (B, 1)
    lo = pos.floor().long()
    frac = pos - lo
    lo_val = ordered.gather(1, lo)
    hi_val = ordered.gather(1, (lo + 1).clamp_max(ordered.shape[1] - 1))
    bg = torch.where(frac > 0, lo_val + frac * (hi_val - lo_val), lo_val)  # (B, 1)
    top = ordered.gather(1, mask.sum(dim=1, keepdim=True) - 1)  # (B, 1) measured maximum
    x = (intensity - bg) / (top - bg).clamp_min(_EPS)
    x = torch.where(mask, x.clamp(0.0, 1.0), torch.zeros_like(x))  # (B, N) in [0, 1]
    if transform == "sqrt":
        return x.sqrt()
    if transform == "log":
        return torch.log1p(100.0 * x) / math.log(101.0)
    if transform == "none":
        return x
    raise ValueError(f"transform must be 'sqrt', 'log' or 'none', got {transform!r}")


def split_log_probs(bit_logits: torch.Tensor, code_matrix: torch.Tensor) -> torch.Tensor:
    """EG log-probabilities induced by independent bit probabilities through the code matrix.

    log p_split(e) = log_softmax_e Σ_b [C_eb log σ(z_b) + (1 − C_eb) log σ(−z_b)]

    (the softmax of ``labels.decode``'s log-likelihoods, i.e. a uniform prior over EGs).

    Parameters
    ----------
    bit_logits : Tensor, shape (B, K)
    code_matrix : Tensor, shape (E, K) of 0/1
    """
    log_on = F.logsigmoid(bit_logits)  # (B, K) log p(bit = 1)
    log_off = F.logsigmoid(-bit_logits)  # (B, K) log p(bit = 0)
    loglik = log_on @ code_matrix.T + log_off @ (1.0 - code_matrix).T  # (B, E)
    return F.log_softmax(loglik, dim=-1)


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens; masked keys are never attended to."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.proj = nn.Linear(config.width, config.width)
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # each (B, T, D)
        q = q.view(B, T, self.heads, D // self.heads).transpose(1, 2)  # (B, H, T, D/H)
        k = k.view(B, T, self.heads, D // self.heads).transpose(1, 2)
        v = v.view(B, T, self.heads, D // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_dropout if self.training else 0.0
        )  # (B, H, T, D/H)
        y = y.transpose(1, 2).contiguous().view(B, T, D)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: Linear → GELU → Linear."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        hidden = int(config.mlp_ratio * config.width)
        self.fc = nn.Linear(config.width, hidden)
        self.proj = nn.Linear(hidden, config.width)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.width)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


def _pool_factors(patch_size: int, stages: int = 3) -> list[int]:
    """Split ``patch_size`` into ``stages`` integer pooling factors whose product is it.

    Prime factors, largest first, each given to the stage with the smallest product so far
    (50 → [5, 5, 2]; 64 → [4, 4, 4]); stages that get no factor pool by 1.
    """
    primes, n, f = [], patch_size, 2
    while n > 1:
        while n % f == 0:
            primes.append(f)
            n //= f
        f += 1
    pools = [1] * stages
    for p in sorted(primes, reverse=True):
        pools[pools.index(min(pools))] *= p
    return sorted(pools, reverse=True)


class ConvStem(nn.Module):
    """Convolutional stem: (Conv1d → GELU → MaxPool1d) stages, total stride = patch size.

    A single strided convolution (the ViT "patchify" stem) must encode where in its patch a
    0.1°-wide peak sits with one linear map; small convolutions followed by max-pooling
    detect a peak wherever it falls and keep its position to the pooling resolution. Early
    convolutions make ViTs train faster and more stably (Xiao et al., "Early convolutions
    help transformers see better", NeurIPS 2021; the hybrid ViT of Dosovitskiy et al. 2021).
    On powder patterns the patchify stem stayed at chance in CPU runs of 13 500 steps.
    The stem sees the intensity channel only: position enters through the positional
    encoding, and unmeasured points are zero and their tokens masked.

    Stages: one per pooling factor of :func:`_pool_factors` (patch 100 → 5, 5, 2, 2);
    kernels 7, 5, 3, 3…; channels c, 2c, 3c…, the last stage ``width``.

    ``strided=True`` (``ViTConfig.stem="strided"``) makes each stage one convolution with
    stride = its pooling factor s and a kernel of about 2s (2s − 1 for odd s, so that the
    output is exactly 1/s as long), evaluated only where the pooled stage keeps a value:
    the first stage then writes a fifth of the full-resolution activations. On the 2-core
    CPU those activations, not the arithmetic, bound the training step
    (``benchmarks/train_step.py``); a window of 2s still covers any peak that a stride
    of s would otherwise fall between (peaks are 10 or more grid points wide).
    """

    def __init__(self, config: ViTConfig, *, strided: bool = False) -> None:
        super().__init__()
        pools = _pool_factors(config.patch_size, stages=4)
        c = config.stem_channels
        channels = [1, *(c * (i + 1) for i in range(len(pools) - 1)), config.width]
        layers: list[nn.Module] = []
        for i, pool in enumerate(pools):
            if strided and pool > 1:
                k = 2 * pool - pool % 2
                layers += [nn.Conv1d(channels[i], channels[i + 1], k, stride=pool, padding=(k - pool) // 2),
                           nn.GELU()]
                continue
            k = (7, 5)[i] if i < 2 else 3
            layers += [
                nn.Conv1d(channels[i], channels[i + 1], k, padding=k // 2),
                nn.GELU(),
                nn.MaxPool1d(pool) if pool > 1 else nn.Identity(),
            ]
        self.net = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(config.width)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """He-normal weights (fan-in, ReLU gain) and zero biases.

        PyTorch's default (Kaiming-uniform, a = √5, random biases) shrinks a sparse peak
        signal ~3× per stage until the biases drown it: with it, four stages passed ~0.05 %
        of the between-pattern variance and the network stayed at chance.
        """
        for module in self.net:
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, Np) input channels → (B, D, T); only channel 0 (intensity) is used.

        The output is layer-normalised per token, so the pattern's content enters the
        transformer at the same scale as the positional encoding.
        """
        y = self.net(x[:, :1])  # (B, D, T)
        return self.norm(y.transpose(1, 2)).transpose(1, 2)


def grid_peaks(
    x: torch.Tensor, mask: torch.Tensor, sin2theta: torch.Tensor, k: int, window: int = 9
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` highest local maxima of each normalised pattern, batched on the grid.

    The pattern is smoothed with the binomial kernel (1, 4, 6, 4, 1)/16; a point is a peak
    where it is the maximum of the ``window`` points around it and above 10⁻³, on a
    measured point. Its position is refined by the parabola through it and its two
    neighbours (a fraction of a grid step). The project's peak search
    (:func:`ratagent.indexing.find_peaks`: background, Kα₂, profile fits) is made for
    indexing and works one pattern at a time; this one runs on the whole batch in the
    training step, on every pattern rendered, and sees the same input at training and
    inference.

    Parameters
    ----------
    x : Tensor, shape (B, N)
        Normalised intensity (:func:`normalise_intensity`), 0 where unmeasured.
    mask : Tensor of bool, shape (B, N)
    sin2theta : Tensor, shape (N,)
        The grid's coordinate (any monotonic scale; positions are returned on it).
    k : int
        Peaks per pattern (fewer maxima: the rest are padding, ``valid`` False).
    window : int
        Odd width in grid points within which only the highest maximum counts.

    Returns
    -------
    position : Tensor, shape (B, k)
        On the scale of ``sin2theta``, highest peak first.
    height : Tensor, shape (B, k)
        The smoothed normalised intensity at the maximum (0 for padding).
    valid : Tensor of bool, shape (B, k)
    """
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd number of grid points ≥ 3, got {window!r}")
    kernel = x.new_tensor([1.0, 4.0, 6.0, 4.0, 1.0]).div(16.0).view(1, 1, 5)
    xs = F.conv1d(x.unsqueeze(1), kernel, padding=2).squeeze(1)  # (B, N)
    top = F.max_pool1d(xs.unsqueeze(1), window, stride=1, padding=window // 2).squeeze(1)
    is_max = (xs >= top) & (xs > 1e-3) & mask
    is_max[:, 0] = is_max[:, -1] = False  # a maximum needs both neighbours
    scores = torch.where(is_max, xs, torch.full_like(xs, -1.0))
    k_eff = min(k, xs.shape[1])
    height, index = scores.topk(k_eff, dim=1)  # (B, k)
    valid = height > 0
    i = index.clamp(1, xs.shape[1] - 2)
    y_lo, y_0, y_hi = xs.gather(1, i - 1), xs.gather(1, i), xs.gather(1, i + 1)
    curvature = y_lo - 2.0 * y_0 + y_hi
    shift = torch.where(curvature < 0, 0.5 * (y_lo - y_hi) / curvature.clamp_max(-1e-12),
                        torch.zeros_like(y_0)).clamp(-0.5, 0.5)
    s2 = sin2theta.to(xs.dtype)
    step = (s2[i + 1] - s2[i - 1]) / 2.0  # local grid step, (B, k)
    position = torch.where(valid, s2[i] + shift * step, torch.zeros_like(y_0))
    height = torch.where(valid, height, torch.zeros_like(height))
    if k_eff < k:
        pad = k - k_eff
        position, height = F.pad(position, (0, pad)), F.pad(height, (0, pad))
        valid = F.pad(valid, (0, pad), value=False)
    return position, height, valid


class PeakTokens(nn.Module):
    """One token per peak: Fourier features of its sin²θ and its height, through an MLP.

    A patch token covers ``patch_size`` grid points (100 points: about 1° 2θ), so two
    reflections in one patch share a token and its stem must encode both positions. A
    peak token carries one reflection's position to a fraction of a grid step: the
    features sin(2π 2ʲ s), cos(2π 2ʲ s) for j < ``peak_frequencies``, s = sin²θ/sin²θ_max,
    resolve positions to about 1/2ⁿ of the range, which is where the absence rules act
    (a missing line is a missing Q², h² + k² + l² in the cubic case). A learned type
    vector tells peak tokens from patch tokens in the blocks. Like the stem's, the tokens
    are layer-normalised, so peaks and patches enter the blocks at one scale.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        n = config.peak_frequencies
        self.register_buffer("frequencies", 2.0 * math.pi * 2.0 ** torch.arange(n, dtype=torch.float32))
        self.embed = nn.Sequential(nn.Linear(2 * n + 1, config.width), nn.GELU(),
                                   nn.Linear(config.width, config.width), nn.LayerNorm(config.width))
        self.type_embed = nn.Parameter(torch.zeros(1, 1, config.width))

    def forward(self, position: torch.Tensor, height: torch.Tensor) -> torch.Tensor:
        """Positions on the (0, 1] scale and heights, each (B, K) → tokens (B, K, D)."""
        phase = position.unsqueeze(2) * self.frequencies  # (B, K, n)
        features = torch.cat([phase.sin(), phase.cos(), height.unsqueeze(2)], dim=2)  # (B, K, 2n + 1)
        return self.embed(features) + self.type_embed


class ViT(nn.Module):
    """Physics-informed ViT over a powder pattern on the model's Q grid.

    Parameters
    ----------
    config : ViTConfig
    code_matrix : array or Tensor, shape (n_eg, n_bits) of 0/1, optional
        Row i is the label code of EG i + 1. Default:
        ``ratagent.crystallography.labels.code_matrix()``. Stored as a buffer, so a
        checkpoint carries the code it was trained with.
    generator : torch.Generator, optional
        Source of the initial weights (truncated normal, std 0.02, biases 0; the conv stem
        He-normal, see :meth:`ConvStem.reset_parameters`); with a seeded generator the
        initial network is reproducible.
    """

    def __init__(
        self,
        config: ViTConfig,
        code_matrix: np.ndarray | torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        if code_matrix is None:
            from ratagent.crystallography import labels  # lazy: not needed to import this file

            code_matrix = labels.code_matrix()
        if isinstance(code_matrix, torch.Tensor):
            code = code_matrix.detach().to(torch.float32).clone()
        else:  # a copy: the crystallography layer hands out read-only arrays
            code = torch.from_numpy(np.array(code_matrix, dtype=np.float32))
        if code.shape != (config.n_eg, config.n_bits):
            raise ValueError(
                f"code_matrix has shape {tuple(code.shape)}, expected "
                f"(n_eg, n_bits) = ({config.n_eg}, {config.n_bits})"
            )
        if not torch.all((code == 0) | (code == 1)):
            raise ValueError("code_matrix must hold only 0 and 1")
        P, N, T, D = config.patch_size, config.n_points, config.n_tokens, config.width
        s2 = torch.as_tensor(config.grid.sin2theta, dtype=torch.float32)  # (N,)
        s2_padded = torch.cat([s2, s2[-1] + (s2[-1] - s2[-2]) * torch.arange(1, T * P - N + 1)])
        self.register_buffer("code_matrix", code)  # (E, K)
        # whether the code's first bits give each EG one crystal system (the system loss term)
        self._system_one_hot = bool(torch.all(code[:, :N_SYSTEM_BITS].sum(1) == 1))
        # the coordinate channel, scaled to (0, 1] over the grid; (1, 1, Np)
        self.register_buffer("sin2theta", (s2_padded / s2[-1]).view(1, 1, T * P))
        # each patch's centre sin²θ on the same scale; (T, 1)
        self.register_buffer("patch_sin2theta", (s2_padded / s2[-1]).view(T, P).mean(1, keepdim=True))

        self.patch_embed = (  # (B, 3, Np) -> (B, D, T)
            nn.Conv1d(3, D, kernel_size=P, stride=P) if config.stem == "patch"
            else ConvStem(config, strided=config.stem == "strided")
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, T, D))  # learned absolute PE
        self.phys_pe = (
            nn.Sequential(nn.Linear(1, config.pe_hidden), nn.GELU(), nn.Linear(config.pe_hidden, D))
            if config.physics_pe
            else None
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if config.pool == "cls" else None
        # "flatten": each token → flatten_dim features, all tokens concatenated → D. Unlike a
        # mean, this keeps *where* each feature sits (d-spacings are absolute positions).
        self.token_proj = nn.Linear(D, config.flatten_dim) if config.pool == "flatten" else None
        self.flatten_proj = (
            nn.Linear(T * config.flatten_dim, D) if config.pool == "flatten" else None
        )
        # peak tokens (module docstring of PeakTokens); with the "flatten" pool their mean
        # enters the pooled vector through its own map
        self.peak_embed = PeakTokens(config) if config.peak_tokens else None
        self.peak_pool = nn.Linear(D, D) if config.peak_tokens and config.pool == "flatten" else None
        self.pe_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.depth)])
        self.ln_f = nn.LayerNorm(D)
        self.split_head = nn.Linear(D, config.n_bits)
        self.aux_head = nn.Linear(D, config.n_eg)
        self.alpha_logit = nn.Parameter(torch.zeros(()))  # α = sigmoid(alpha_logit), starts at ½
        self._init_weights(generator)

    def _init_weights(self, generator: torch.Generator | None) -> None:
        # the conv stem has its own (He) initialisation: with std 0.02 its stages would
        # shrink the pattern's signal far below the positional encoding
        stem: set[nn.Module] = set()
        if isinstance(self.patch_embed, ConvStem):
            self.patch_embed.reset_parameters(generator)
            stem = set(self.patch_embed.modules())
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Conv1d) and module not in stem:
                nn.init.trunc_normal_(module.weight, std=0.02, generator=generator)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02, generator=generator)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02, generator=generator)

    @property
    def alpha(self) -> torch.Tensor:
        """Fusion weight α of the split head, a scalar in (0, 1)."""
        return torch.sigmoid(self.alpha_logit)

    def num_parameters(self) -> int:
        """Trainable parameter count."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def prepare_input(
        self, intensity: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Build the padded 3-channel input and the per-token validity.

        Parameters
        ----------
        intensity : Tensor, shape (B, N)
            Raw intensity on the grid (any scale).
        mask : Tensor of bool, shape (B, N), optional
            True where measured; default all measured.

        Returns
        -------
        x : Tensor, shape (B, 3, Np)
            Channels: normalised intensity, sin²θ / sin²θ_max, mask (1.0 measured).
        valid : Tensor of bool, shape (B, T)
            True for tokens with at least one measured point.
        """
        N, P, T = self.config.n_points, self.config.patch_size, self.config.n_tokens
        if intensity.ndim != 2 or intensity.shape[1] != N:
            raise ValueError(f"intensity must have shape (B, {N}), got {tuple(intensity.shape)}")
        if mask is None:
            mask = torch.ones_like(intensity, dtype=torch.bool)
        elif mask.shape != intensity.shape or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be bool of shape {tuple(intensity.shape)}, got {mask.dtype} {tuple(mask.shape)}"
            )
        if not bool(mask.any(dim=1).all()):
            raise ValueError("a pattern in the batch has no measured point on the model's grid")
        B = intensity.shape[0]
        inten = normalise_intensity(
            intensity.float(),
            mask,
            self.config.intensity_transform,
            self.config.background_quantile,
        )
        pad = T * P - N
        inten = F.pad(inten, (0, pad))  # (B, Np)
        m = F.pad(mask, (0, pad), value=False)  # (B, Np)
        s2 = self.sin2theta.expand(B, 1, T * P) * m.unsqueeze(1)  # unmeasured: 0 in every channel
        x = torch.cat([inten.unsqueeze(1), s2, m.unsqueeze(1).float()], dim=1)  # (B, 3, Np)
        valid = m.view(B, T, P).any(dim=2)  # (B, T)
        return x, valid

    def forward_features(
        self, intensity: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token features after the last block and final LayerNorm.

        Returns
        -------
        tokens : Tensor, shape (B, T', D)
            T' = T + K (K = ``peak_tokens``: the patches first, then the peaks), one more
            with the CLS token first.
        valid : Tensor of bool, shape (B, T')
        """
        x, valid = self.prepare_input(intensity, mask)
        tok = self.patch_embed(x).transpose(1, 2)  # (B, T, D)
        pe = self.pos_embed  # (1, T, D)
        if self.phys_pe is not None:
            pe = pe + self.phys_pe(self.patch_sin2theta).unsqueeze(0)  # (1, T, D)
        tok = tok + pe
        if self.peak_embed is not None:
            N = self.config.n_points
            position, height, found = grid_peaks(x[:, 0, :N], x[:, 2, :N] > 0, self.sin2theta[0, 0, :N],
                                                 self.config.peak_tokens)
            tok = torch.cat([tok, self.peak_embed(position, height)], dim=1)  # (B, T + K, D)
            valid = torch.cat([valid, found], dim=1)
        if self.cls_token is not None:
            tok = torch.cat([self.cls_token.expand(tok.shape[0], -1, -1), tok], dim=1)
            valid = F.pad(valid, (1, 0), value=True)
        tok = self.pe_dropout(tok)
        # key mask (B, 1, 1, T'); None when all tokens are measured (the fast path at inference)
        attn_mask = None if bool(valid.all()) else valid[:, None, None, :]
        for block in self.blocks:
            tok = block(tok, attn_mask)
        return self.ln_f(tok), valid

    def forward_head(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> ViTOutput:
        """Pool tokens, apply both heads and fuse them.

        Parameters
        ----------
        tokens : Tensor, shape (B, T', D)
        valid : Tensor of bool, shape (B, T'), optional
        """
        if self.cls_token is not None:
            pooled = tokens[:, 0]  # (B, D)
        elif self.token_proj is not None and self.flatten_proj is not None:
            T = self.config.n_tokens
            f = self.token_proj(tokens[:, :T])  # (B, T, F)
            if valid is not None:  # unmeasured tokens contribute exactly zero
                f = f * valid[:, :T].unsqueeze(2).to(f.dtype)
            z = self.flatten_proj(f.flatten(1))  # (B, D)
            if self.peak_pool is not None:  # the mean of the found peaks' tokens
                peaks = tokens[:, T:]
                w = peaks.new_ones(peaks.shape[:2]) if valid is None else valid[:, T:].to(peaks.dtype)
                w = w.unsqueeze(2)  # (B, K, 1)
                z = z + self.peak_pool((peaks * w).sum(1) / w.sum(1).clamp_min(1.0))
            pooled = F.gelu(z)  # (B, D)
        elif valid is None:
            pooled = tokens.mean(dim=1)
        else:
            w = valid.unsqueeze(2).to(tokens.dtype)  # (B, T, 1)
            pooled = (tokens * w).sum(dim=1) / w.sum(dim=1)  # (B, D)
        bit_logits = self.split_head(pooled)  # (B, K)
        aux_logits = self.aux_head(pooled)  # (B, E)
        log_p_split = split_log_probs(bit_logits, self.code_matrix)  # (B, E)
        log_p = torch.logaddexp(
            F.logsigmoid(self.alpha_logit) + log_p_split,
            F.logsigmoid(-self.alpha_logit) + F.log_softmax(aux_logits, dim=-1),
        )  # (B, E): log(α p_split + (1 − α) p_aux)
        return ViTOutput(bit_logits, aux_logits, log_p_split, log_p)

    def forward(self, intensity: torch.Tensor, mask: torch.Tensor | None = None) -> ViTOutput:
        """Intensity (B, N) and mask (B, N) → :class:`ViTOutput`."""
        return self.forward_head(*self.forward_features(intensity, mask))

    def loss(
        self,
        out: ViTOutput,
        target: torch.Tensor,
        weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0),
    ) -> torch.Tensor:
        """Training loss: w₀·BCE(bits) + w₁·CE(aux) + w₂·NLL(fused) + w₃·NLL(system).

        Parameters
        ----------
        out : ViTOutput
        target : Tensor of int64, shape (B,)
            0-based EG index (EG number − 1).
        weights : three or four floats
            Weights of the bit, auxiliary, fused and crystal-system terms (a missing fourth
            is 0). The fused term is what trains α. The system term is the NLL of the fused
            distribution summed over each crystal system's EGs (the label code's first
            ``N_SYSTEM_BITS`` bits): crystal system is what a powder pattern shows first
            and what moves accuracy on measured data most (knowing it and taking the most
            frequent EG within it gives 41 % top-1 on the RRUFF dev set, the prior alone 11 %),
            while in the 37-bit BCE it is only 7 of 37 terms.
        """
        if len(weights) not in (3, 4):
            raise ValueError(f"loss weights must be 3 or 4 floats, got {weights!r}")
        w_bits, w_aux, w_fused, w_sys = (*weights, 0.0)[:4]
        bits = self.code_matrix[target]  # (B, K)
        loss = (
            w_bits * F.binary_cross_entropy_with_logits(out.bit_logits, bits)
            + w_aux * F.cross_entropy(out.aux_logits, target)
            + w_fused * F.nll_loss(out.log_p, target)
        )
        if w_sys:
            if not self._system_one_hot:
                raise ValueError(
                    f"the crystal-system loss needs the code matrix's first {N_SYSTEM_BITS} bits "
                    "one-hot in every row; use 3 loss weights with this code"
                )
            member = self.code_matrix[:, :N_SYSTEM_BITS]  # (E, S) one-hot system of each EG
            log_sys = torch.logsumexp(
                out.log_p.unsqueeze(2) + torch.log(member).unsqueeze(0), dim=1
            )  # (B, S)
            loss = loss + w_sys * F.nll_loss(log_sys, bits[:, :N_SYSTEM_BITS].argmax(1))
        return loss


def config_summary(config: ViTConfig) -> dict[str, Any]:
    """Short description used in logs and model cards (no grid detail)."""
    return {k: v for k, v in config.to_dict().items() if k != "grid"} | {
        "n_points": config.n_points,
        "n_tokens": config.n_tokens,
    }

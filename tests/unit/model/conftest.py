"""Fixtures for the model tests: tiny networks on a coarse grid, so tests run in seconds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from ratagent.model.vit import ViT, ViTConfig
from ratagent.patterns import QGrid

#: A coarse version of the model grid: 2θ 5–90° at 0.1° (Cu Kα1), 851 points.
TINY_GRID = QGrid(two_theta_min_deg=5.0, two_theta_max_deg=90.0, step_deg=0.1)


def _tiny_config(**overrides) -> ViTConfig:
    kwargs = dict(grid=TINY_GRID, patch_size=10, width=32, depth=2, heads=2, pe_hidden=16)
    kwargs.update(overrides)
    return ViTConfig(**kwargs)


def _tiny_model(seed: int = 0, **overrides) -> ViT:
    gen = torch.Generator().manual_seed(seed)
    return ViT(_tiny_config(**overrides), generator=gen).eval()


@pytest.fixture
def tiny_grid() -> QGrid:
    """2θ 5–90° at 0.1° for Cu Kα1: 851 points."""
    return TINY_GRID


@pytest.fixture
def tiny_config() -> Callable[..., ViTConfig]:
    """Factory: a two-block, 32-wide ViT config on the tiny grid (86 tokens of 10 points)."""
    return _tiny_config


@pytest.fixture
def tiny_model() -> Callable[..., ViT]:
    """Factory ``tiny_model(seed=0, **config_overrides)``: a seeded tiny ViT in eval mode."""
    return _tiny_model


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread (the CPUs are shared), then restore the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

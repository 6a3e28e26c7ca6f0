"""Helpers for users' own tests (and ours): a tiny real checkpoint, an agent on it, and
whether a service (Redis, PostgreSQL) is there to test against.

The tiny network is *untrained* (random initial weights): its posteriors are real outputs
of a real network, good for wiring and timing tests, and say nothing about symmetry.
"""

from __future__ import annotations

import socket
from pathlib import Path

from ratagent.patterns import QGrid

__all__ = ["TINY_GRID", "free_port", "reachable", "stop_process", "tiny_agent", "tiny_checkpoint"]

#: 2θ 5–90° at 0.1° for Cu Kα1 (851 points): a coarse model grid for fast tests.
TINY_GRID = QGrid(two_theta_min_deg=5.0, two_theta_max_deg=90.0, step_deg=0.1)


def tiny_checkpoint(path: str | Path, seed: int = 0, **config) -> Path:
    """Save an untrained two-block ViT on :data:`TINY_GRID` as a checkpoint directory at ``path``.

    Keyword arguments override :class:`~ratagent.model.vit.ViTConfig` fields.
    """
    import torch

    from ratagent.model.calibration import Calibration
    from ratagent.model.checkpoint import save
    from ratagent.model.vit import ViT, ViTConfig

    settings = dict(grid=TINY_GRID, patch_size=10, width=32, depth=2, heads=2, pe_hidden=16) | config
    model = ViT(ViTConfig(**settings), generator=torch.Generator().manual_seed(seed)).eval()
    save(model, Calibration(), path, training={"trained": False, "note": "untrained tiny test network"},
         overwrite=True)
    return Path(path)


def tiny_agent(path: str | Path, seed: int = 0, **config):
    """An :class:`~ratagent.agent.Agent` on a freshly saved :func:`tiny_checkpoint` at ``path``.

    Keyword arguments are :class:`~ratagent.agent.AgentConfig` fields.
    """
    from ratagent.agent import Agent, AgentConfig
    from ratagent.model import load

    return Agent(load(tiny_checkpoint(path, seed)), AgentConfig(**config))


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP service answers at ``host:port`` (for tests that skip without it)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process, timeout: float = 30.0) -> None:
    """Terminate a service a test started (a ``subprocess.Popen``); kill it if it lingers."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

"""The structure bank: random reflection lists for all 230 space groups, in npz shards.

Layout: ``<directory>/shard-00000.npz`` … Each shard holds ``shard_size`` records,
concatenated, with ``offsets`` (S + 1,) into the per-reflection arrays:
``sg_number`` (S,), ``hall`` (S,), ``name`` (S,), ``cell`` (S, 6), ``hkl`` (T, 3) int16,
``multiplicity`` (T,) int16, ``d`` (T,) float32, ``f2`` (T,) float32, and scalars
``d_min``, ``seed``, ``shard``, ``balance``, ``structures`` (the element statistics of
:func:`~ratagent.simulation.structures.composition`; shards written before it existed
hold none and were drawn as ``"pool"``).

Shard i is drawn from ``SeedSequence(seed, spawn_key=(i,))``, so a shard's content
depends only on (seed, i, settings): writing is resumable (finished shards, which
appear atomically by rename, are skipped) and parallel (one process per shard).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ratagent.simulation.reflections import ReflectionList, reflection_list
from ratagent.simulation.structures import COMPOSITIONS, composition, random_crystal

__all__ = [
    "AbsenceReport",
    "bank_settings",
    "check_absences",
    "iter_bank",
    "random_record",
    "read_shard",
    "sample_space_group",
    "shard_path",
    "write_bank",
    "write_shard",
]

logger = logging.getLogger(__name__)
_BALANCES = ("eg", "sg")


def sample_space_group(rng: np.random.Generator, balance: str = "eg") -> int:
    """Draw a space-group number.

    ``balance="eg"``: an extinction group uniformly among the paper's 99, then a space
    group uniformly within it (so EGs are balanced). ``balance="sg"``: uniform over 1–230.
    """
    if balance == "sg":
        return int(rng.integers(1, 231))
    if balance != "eg":
        raise ValueError(f"balance must be one of {_BALANCES}, got {balance!r}")
    from ratagent.crystallography import N_EG, eg_to_sgs

    sgs = eg_to_sgs(int(rng.integers(1, N_EG + 1)))
    return int(sgs[int(rng.integers(0, len(sgs)))])


def random_record(
    rng: np.random.Generator,
    *,
    sg_number: int | None = None,
    d_min: float = 1.0,
    balance: str = "eg",
    structures: str = "pool",
) -> ReflectionList:
    """A random structure's :class:`ReflectionList` (space group drawn unless given), its
    elements drawn from the statistics named by ``structures``
    (:func:`~ratagent.simulation.structures.composition`)."""
    sg = sample_space_group(rng, balance) if sg_number is None else sg_number
    return reflection_list(random_crystal(sg, rng, elements=composition(structures)), d_min, name="random")


def shard_path(directory: str | Path, index: int) -> Path:
    """Path of shard ``index`` in a bank directory."""
    return Path(directory) / f"shard-{index:05d}.npz"


def write_shard(
    directory: str | Path,
    index: int,
    shard_size: int,
    seed: int,
    d_min: float = 1.0,
    balance: str = "eg",
    structures: str = "pool",
) -> Path:
    """Generate and write shard ``index`` (skipped if it exists); returns its path."""
    path = shard_path(directory, index)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    records = [random_record(rng, d_min=d_min, balance=balance, structures=structures)
               for _ in range(shard_size)]
    n = np.array([len(r) for r in records])
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        sg_number=np.array([r.sg_number for r in records], np.int16),
        hall=np.array([r.hall for r in records]),
        name=np.array([r.name for r in records]),
        cell=np.stack([r.cell for r in records]),
        offsets=np.concatenate([[0], np.cumsum(n)]).astype(np.int64),
        hkl=np.concatenate([r.hkl for r in records]).astype(np.int16),
        multiplicity=np.concatenate([r.multiplicity for r in records]).astype(np.int16),
        d=np.concatenate([r.d for r in records]).astype(np.float32),
        f2=np.concatenate([r.f2 for r in records]).astype(np.float32),
        d_min=np.float64(d_min),
        seed=np.int64(seed),
        shard=np.int64(index),
        balance=np.array(balance),
        structures=np.array(structures),
    )
    os.replace(tmp, path)
    return path


def write_bank(
    directory: str | Path,
    n_structures: int,
    *,
    shard_size: int = 1000,
    seed: int = 0,
    d_min: float = 1.0,
    balance: str = "eg",
    structures: str = "pool",
    workers: int = 2,
    progress: bool = True,
) -> list[Path]:
    """Write a bank of ``n_structures`` random records (rounded up to whole shards).

    Parameters
    ----------
    directory : where the shards go (created).
    n_structures, shard_size : how many records, and per shard.
    seed : base seed; shard i uses ``SeedSequence(seed, spawn_key=(i,))``.
    d_min : d-spacing limit of the reflection lists, Å.
    balance : "eg" (extinction groups balanced) or "sg" (space groups uniform).
    structures : element statistics of the random structures, one of
        :data:`~ratagent.simulation.structures.COMPOSITIONS`.
    workers : processes; 1 runs in this process.
    progress : show a tqdm bar over shards.

    Returns
    -------
    list of Path, all shards (finished before and now).
    """
    if n_structures < 1 or shard_size < 1:
        raise ValueError(f"n_structures and shard_size must be positive, got {n_structures}, {shard_size}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if balance not in _BALANCES:
        raise ValueError(f"balance must be one of {_BALANCES}, got {balance!r}")
    if structures not in COMPOSITIONS:
        raise ValueError(f"structures must be one of {COMPOSITIONS}, got {structures!r}")
    from tqdm.auto import tqdm

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n_shards = -(-n_structures // shard_size)
    todo = [i for i in range(n_shards) if not shard_path(directory, i).exists()]
    wanted = {"seed": seed, "d_min": d_min, "balance": balance, "structures": structures}
    for written in sorted(directory.glob("shard-*.npz")):  # a bank is resumed, or extended, as begun
        found = bank_settings(written)
        differ = {k: (found[k], v) for k, v in wanted.items() if found[k] != v}
        if differ:
            raise ValueError(f"{written} was written with other settings than asked for "
                             f"(found, asked): {differ}; write the bank to another directory")
    logger.info("bank %s: %d of %d shards to write", directory, len(todo), n_shards)
    args = [(directory, i, shard_size, seed, d_min, balance, structures) for i in todo]
    with tqdm(
        total=n_shards,
        initial=n_shards - len(todo),
        disable=not progress,
        desc="structure bank",
        unit="shard",
    ) as bar:
        if workers == 1 or len(todo) <= 1:
            for a in args:
                write_shard(*a)
                bar.update()
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                for _ in pool.map(_write_shard_star, args):
                    bar.update()
    return [shard_path(directory, i) for i in range(n_shards)]


def _write_shard_star(args: tuple) -> Path:
    return write_shard(*args)


def bank_settings(path: str | Path) -> dict[str, Any]:
    """The settings a shard (``path``, a shard file) or a bank (a directory: its first
    shard) was drawn with: seed, d_min, balance and structures (``"pool"`` for shards
    written before the option existed)."""
    path = Path(path)
    if path.is_dir():
        shards = sorted(path.glob("shard-*.npz"))
        if not shards:
            raise ValueError(f"{path}: no shard-*.npz files")
        path = shards[0]
    with np.load(path, allow_pickle=False) as z:
        return {
            "seed": int(z["seed"]),
            "d_min": float(z["d_min"]),
            "balance": str(z["balance"]),
            "structures": str(z["structures"]) if "structures" in z.files else "pool",
        }


def read_shard(path: str | Path) -> list[ReflectionList]:
    """All records of one shard."""
    with np.load(path, allow_pickle=False) as z:  # each z[key] reads the file again: read once
        off, sg, hall, cell, name = (z[k] for k in ("offsets", "sg_number", "hall", "cell", "name"))
        hkl, mult, d, f2 = z["hkl"], z["multiplicity"], z["d"], z["f2"]
    return [
        ReflectionList(
            int(sg[i]),
            str(hall[i]),
            cell[i],
            hkl[off[i] : off[i + 1]],
            mult[off[i] : off[i + 1]],
            d[off[i] : off[i + 1]],
            f2[off[i] : off[i + 1]],
            str(name[i]),
        )
        for i in range(len(off) - 1)
    ]


def iter_bank(directory: str | Path) -> Iterator[ReflectionList]:
    """Every record of every shard in a bank directory, shard by shard."""
    paths = sorted(Path(directory).glob("shard-*.npz"))
    if not paths:
        raise ValueError(f"{directory}: no shard-*.npz files")
    for p in paths:
        yield from read_shard(p)


@dataclass
class AbsenceReport:
    """Outcome of :func:`check_absences`; ``ok`` when nothing absent was stored."""

    n_structures: int = 0
    n_reflections: int = 0
    absent_stored: list[tuple[str, int, tuple[int, int, int], float]] = field(default_factory=list)
    wrong_group: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.absent_stored and not self.wrong_group


def check_absences(records: Iterable[ReflectionList] | str | Path) -> AbsenceReport:
    """Check stored reflections against gemmi's own systematic-absence test.

    For every record: its Hall symbol must generate a group of its space-group number
    (``gemmi.find_spacegroup_by_ops``), and no stored hkl may be systematically absent
    (``GroupOps.systematic_absences``); each offender is listed with its |F|², which
    for a correct structure would be zero.

    Parameters
    ----------
    records : iterable of ReflectionList, or a bank directory.
    """
    import gemmi

    if isinstance(records, str | Path):
        records = iter_bank(records)
    report = AbsenceReport()
    for k, r in enumerate(records):
        label = r.name or f"#{k}"
        ops = gemmi.symops_from_hall(r.hall)
        found = gemmi.find_spacegroup_by_ops(ops)
        if found is None or found.number != r.sg_number:
            report.wrong_group.append((label, r.sg_number, 0 if found is None else found.number))
        report.n_structures += 1
        report.n_reflections += len(r)
        if len(r):
            bad = np.flatnonzero(ops.systematic_absences(r.hkl.astype(np.int32)))
            report.absent_stored += [
                (label, r.sg_number, tuple(int(v) for v in r.hkl[i]), float(r.f2[i])) for i in bad
            ]
    return report

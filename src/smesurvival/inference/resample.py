"""Bootstrap weight rows, drawn block by block from independent random streams.

Pairs resampling gives each row its multinomial count, the cluster bootstrap each row its
cluster's count, the Bayesian bootstrap Dirichlet(1) weights times n. The B rows are drawn in
fixed blocks of :data:`BLOCK` replicates, each block from its own stream spawned from the seed
(:meth:`numpy.random.SeedSequence.spawn`), so any block can be drawn on its own -- by the
worker thread about to refit it, while the block is small enough to stay in cache -- and the
weights never depend on which thread draws them or in which order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from smesurvival.errors import UsageError
from smesurvival.inference.vcov import check_choice, cluster_codes

ResampleKind = Literal["pairs", "bayesian"]
RESAMPLE_KINDS: tuple[str, ...] = get_args(ResampleKind)
BLOCK = 512  # replicates per block (fixed: the weights depend only on the seed)


@dataclass(frozen=True)
class WeightDraws:
    """B bootstrap weight rows over n data rows, drawn on demand one block at a time."""

    n: int
    B: int
    kind: str
    codes: np.ndarray | None  # cluster code of each row (None: rows are the units)
    units: int  # number of resampled units (rows or clusters)
    seeds: tuple[np.random.SeedSequence, ...]  # one per block
    dtype: Any
    base: np.ndarray | None = None  # prior weights multiplying every row (None: 1)

    @property
    def n_blocks(self) -> int:
        return len(self.seeds)

    def mean_row(self) -> np.ndarray:
        """The expected weight of each row (every scheme resamples with mean 1, times the
        prior weights)."""
        return np.ones(self.n) if self.base is None else self.base.copy()

    def bounds(self, i: int) -> tuple[int, int]:
        """Replicates start..stop of block i."""
        return i * BLOCK, min((i + 1) * BLOCK, self.B)

    @property
    def integral(self) -> bool:
        """Every weight is a whole number (pairs counts times whole prior weights): exact in
        float32."""
        return self.kind == "pairs" and (self.base is None or bool(np.all(self.base == np.round(self.base))))

    def block(self, i: int, float32: bool = False) -> np.ndarray:
        """The weight rows of block i, shape (stop - start, n) (``float32``: in single
        precision, for whole-number weights; :attr:`integral`)."""
        start, stop = self.bounds(i)
        b, m = stop - start, self.units
        rng = np.random.default_rng(self.seeds[i])
        out = np.empty((b, self.n), dtype=np.float32 if float32 else self.dtype)
        if self.kind == "pairs":
            draws = rng.integers(0, m, size=(b, m))
            draws += (np.arange(b) * m)[:, None]
            unit = np.bincount(draws.ravel(), minlength=b * m).reshape(b, m)
        else:
            e = rng.standard_exponential(size=(b, m))
            unit = e * (m / e.sum(axis=1, keepdims=True))
        out[:] = unit if self.codes is None else unit[:, self.codes]  # cast on assignment
        if self.base is not None:
            out *= self.base
        return out

    def all(self) -> np.ndarray:
        """Every weight row, shape (B, n)."""
        out = np.empty((self.B, self.n), dtype=self.dtype)
        for i in range(self.n_blocks):
            start, stop = self.bounds(i)
            out[start:stop] = self.block(i)
        return out

    def scaled(self, base: np.ndarray) -> WeightDraws:
        """The same draws times prior row weights ``base`` (a replicate's count times the
        row's own frequency weight)."""
        base = np.asarray(base, dtype=float)
        if base.shape != (self.n,):
            raise UsageError(f"base weights must have one value per row ({self.n}); got {base.shape}")
        return WeightDraws(self.n, self.B, self.kind, self.codes, self.units, self.seeds,
                           self.dtype, base if self.base is None else self.base * base)


def draw_weights(
    n: int,
    B: int,
    seed: int | np.random.Generator | np.random.SeedSequence | None = None,
    kind: ResampleKind = "pairs",
    cluster: np.ndarray | None = None,
    dtype: type[np.floating[Any]] = np.float64,
) -> WeightDraws:
    """Bootstrap weights as :class:`WeightDraws` (drawn when a block is asked for).

    With ``cluster`` (one label per row), clusters are resampled: each row gets its
    cluster's count (pairs) or its cluster's weight G x Dirichlet(1) (Bayesian), so rows of a
    cluster always move together. Plain Bayesian weights sum to n in every replicate;
    clustered ones to n on average.
    """
    check_choice(kind, RESAMPLE_KINDS, "kind")
    if n < 1 or B < 1:
        raise UsageError(f"n and B must be positive; got n={n}, B={B}")
    codes: np.ndarray | None = None
    m = n
    if cluster is not None:
        cluster = np.asarray(cluster)
        if cluster.shape != (n,):
            raise UsageError(f"cluster must have one label per row ({n}); got {cluster.shape}")
        codes, m = cluster_codes(cluster)
    if isinstance(seed, np.random.Generator):
        root = np.random.SeedSequence(int(seed.integers(0, 2**63)))
    elif isinstance(seed, np.random.SeedSequence):
        root = seed
    else:
        root = np.random.SeedSequence(seed)
    seeds = tuple(root.spawn(-(-B // BLOCK)))
    return WeightDraws(n, B, kind, codes, m, seeds, dtype)


def resample_weights(
    n: int,
    B: int,
    seed: int | np.random.Generator | np.random.SeedSequence | None = None,
    kind: ResampleKind = "pairs",
    cluster: np.ndarray | None = None,
    dtype: type[np.floating[Any]] = np.float64,
) -> np.ndarray:
    """Bootstrap weights, shape (B, n): multinomial counts (pairs) or Dirichlet(1) x n
    (Bayesian); :func:`draw_weights` documents the options and draws the same rows lazily."""
    return draw_weights(n, B, seed, kind, cluster, dtype).all()

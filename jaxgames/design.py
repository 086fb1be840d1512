"""Sample designs: sets of parameter points swept along one ``sample`` dimension.

A full-factorial grid is described by ``axes`` (one coordinate per parameter, see
:func:`jaxgames.sweep`). When the parameter space has more than a handful of dimensions a grid
is wasteful, and a *design* -- a list of points -- is used instead. Every design here is a
:class:`Design`: named columns of equal length, its kind and its seed, so the points can be
regenerated exactly (the seed is recorded in the dataset's provenance).

Bounds are ``{name: (lo, hi)}`` or ``{name: (lo, hi, "log")}``; a ``"log"`` parameter is sampled
uniformly in ``log(value)`` (useful for losses and effectiveness rates spanning decades).
Random draws use NumPy's PCG64 generator; the Sobol sequence and Latin hypercube are those of
``scipy.stats.qmc`` (well tested; we do not reimplement direction numbers).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_KINDS = ("random", "latin_hypercube", "sobol", "saltelli", "points")


@dataclasses.dataclass(frozen=True, eq=False)
class Design:
    """Parameter points along one ``sample`` dimension.

    Attributes:
        points: ``{parameter: 1-D float array}``, all of the same length ``n``.
        kind: ``"random"``, ``"latin_hypercube"``, ``"sobol"``, ``"saltelli"`` (see
            :func:`jaxgames.sensitivity.saltelli_design`) or ``"points"`` (explicit).
        seed: the seed the points were drawn with (``None`` for explicit points).
        bounds: the bounds they were drawn from (``{}`` for explicit points).
        dim: name of the sample dimension in the dataset.
    """

    points: Mapping[str, np.ndarray]
    kind: str = "points"
    seed: int | None = None
    bounds: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    dim: str = "sample"

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"design kind must be one of {_KINDS}, got {self.kind!r}")
        if not self.points:
            raise ValueError("a design needs at least one parameter")
        pts = {}
        for name, v in self.points.items():
            arr = np.asarray(v, dtype=float)
            if arr.ndim != 1:
                raise ValueError(f"design column {name!r} must be 1-D, got shape {arr.shape}")
            pts[name] = arr
        sizes = {len(v) for v in pts.values()}
        if len(sizes) != 1:
            lengths = {k: len(v) for k, v in pts.items()}
            raise ValueError(f"design columns must have equal lengths, got {lengths}")
        if sizes == {0}:
            raise ValueError("a design needs at least one point")
        object.__setattr__(self, "points", pts)

    @property
    def size(self) -> int:
        return len(next(iter(self.points.values())))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.points)

    @classmethod
    def from_points(cls, points: Mapping[str, Any], dim: str = "sample") -> Design:
        """An explicit design (e.g. a one-way or Saltelli design built elsewhere)."""
        return cls(points=points, kind="points", dim=dim)

    def describe(self) -> str:
        """JSON description for provenance attrs (the points themselves are coords)."""
        return json.dumps({"kind": self.kind, "n": self.size, "seed": self.seed,
                           "bounds": {k: list(v) for k, v in self.bounds.items()}})


def _check_bounds(bounds: Mapping[str, Sequence]) -> dict[str, tuple]:
    out = {}
    if not bounds:
        raise ValueError("bounds must name at least one parameter")
    for name, b in bounds.items():
        b = tuple(b)
        if len(b) not in (2, 3) or (len(b) == 3 and b[2] not in ("log", "linear")):
            raise ValueError(
                f"bounds[{name!r}] must be (lo, hi) or (lo, hi, 'log'|'linear'), got {b!r}")
        lo, hi = float(b[0]), float(b[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"bounds[{name!r}] = {b!r}: need finite lo < hi")
        log = len(b) == 3 and b[2] == "log"
        if log and lo <= 0:
            raise ValueError(f"bounds[{name!r}] = {b!r}: a log-scaled range needs lo > 0")
        out[name] = (lo, hi, "log") if log else (lo, hi)
    return out


def scale_unit(u: np.ndarray, bounds: Mapping[str, tuple]) -> dict[str, np.ndarray]:
    """Map points of the unit cube ``u`` (n, d) to parameter values, column j to bounds[j]."""
    cols = {}
    for j, (name, b) in enumerate(bounds.items()):
        lo, hi = b[0], b[1]
        if len(b) == 3 and b[2] == "log":
            cols[name] = np.exp(np.log(lo) + u[:, j] * (np.log(hi) - np.log(lo)))
        else:
            cols[name] = lo + u[:, j] * (hi - lo)
    return cols


def _check_n(n) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


def _check_seed(seed) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


#: Bytes a design of ``n`` points over ``d`` parameters holds at its peak, per value: the
#: unit-cube sample, its scaled columns and one temporary of the generator, 8 bytes each.
_BYTES_PER_VALUE = 3 * 8


class DesignTooLarge(ValueError):
    """A design whose points would not fit in memory, refused before anything is allocated
    (as a sweep's :class:`jaxgames._sweep.StudyTooLarge`). ``key`` is ``"n"``, ``need`` and
    ``limit`` are bytes."""

    def __init__(self, n: int, d: int, need: int, limit: int, default: bool):
        from jaxgames._sweep import format_bytes

        self.key, self.resource, self.need, self.limit = "n", "memory", need, limit
        source = " (the memory available now)" if default else ""
        self.statement = (f"{n:,} points x {d} parameters need about {format_bytes(need)} of "
                          f"memory, more than the limit {format_bytes(limit)}{source}")
        super().__init__(f"n: {self.statement}; draw fewer points, or raise the limit with "
                         "max_memory=BYTES (e.g. max_memory=\"200GB\") if the estimate is "
                         "too high")


def _check_memory(n: int, d: int, max_memory: int | str | None) -> None:
    """:class:`DesignTooLarge` if ``n`` points over ``d`` parameters exceed ``max_memory``
    (bytes or a size such as ``"64GB"``; default: the memory available now)."""
    from jaxgames._sweep import memory_available, parse_bytes

    need = _BYTES_PER_VALUE * n * d
    limit = memory_available() if max_memory is None else parse_bytes(max_memory)
    if need > limit:
        raise DesignTooLarge(n, d, need, limit, max_memory is None)


def _checked(bounds, n, seed, max_memory):
    bounds, n, seed = _check_bounds(bounds), _check_n(n), _check_seed(seed)
    _check_memory(n, len(bounds), max_memory)
    return bounds, n, seed


def random(bounds: Mapping[str, Sequence], n: int, *, seed: int,
           max_memory: int | str | None = None) -> Design:
    """``n`` independent uniform points (uniform in log for ``"log"`` bounds).

    ``max_memory`` (every design here): bytes, or a size such as ``"64GB"``, the design may
    take (default: the memory available now); a larger ``n`` raises :class:`DesignTooLarge`
    (a ``ValueError`` naming ``n``) before anything is allocated.
    """
    bounds, n, seed = _checked(bounds, n, seed, max_memory)
    u = np.random.default_rng(seed).random((n, len(bounds)))
    return Design(scale_unit(u, bounds), kind="random", seed=seed, bounds=bounds)


def latin_hypercube(bounds: Mapping[str, Sequence], n: int, *, seed: int,
                    max_memory: int | str | None = None) -> Design:
    """Latin hypercube of ``n`` points: every parameter's range cut into ``n`` strata, one each."""
    from scipy.stats import qmc

    bounds, n, seed = _checked(bounds, n, seed, max_memory)
    u = qmc.LatinHypercube(d=len(bounds), rng=np.random.default_rng(seed)).random(n)
    return Design(scale_unit(u, bounds), kind="latin_hypercube", seed=seed, bounds=bounds)


def sobol(bounds: Mapping[str, Sequence], n: int, *, seed: int, scramble: bool = True,
          max_memory: int | str | None = None) -> Design:
    """First ``n`` points of a (scrambled, Owen) Sobol sequence; ``n`` should be a power of 2."""
    from scipy.stats import qmc

    bounds, n, seed = _checked(bounds, n, seed, max_memory)
    u = qmc.Sobol(d=len(bounds), scramble=scramble, rng=np.random.default_rng(seed)).random(n)
    return Design(scale_unit(u, bounds), kind="sobol", seed=seed, bounds=bounds)

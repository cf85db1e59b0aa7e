"""Direct batch encoding: design blocks of simple formulas without formulaic.

The stream and Spark engines fix one formulaic :class:`~formulaic.ModelSpec` after the scan
pass (categorical levels and transform state of the whole data) and used to re-run it on every
batch of every pass. formulaic goes through pandas frames, categoricals and one data frame per
factor: about 80% of a pass. Most register formulas need none of that: numeric columns, their
products, treatment-coded factors and centred/standardised columns. For those,
:func:`direct_encoder` reads the fixed spec once and returns a :class:`DirectEncoder` that
fills the row-major float64 block the kernel reads straight from the batch's numpy/Arrow
columns, with formulaic's column names, order and values (every value computed by the same
arithmetic in the same order, so the blocks are equal, not just close).

Covered (anything else makes :func:`direct_encoder` return None and the engines keep formulaic):

* the intercept; a numeric column ``x`` (bool, integer or float, numpy or pandas nullable);
* ``C(x)`` with no keywords, and text or boolean columns used bare (``industry``), with the
  levels the spec fixed and treatment coding (first level the reference when reduced, one
  column per level when the term spans the intercept);
* ``center(x)``, ``standardize(x)``/``scale(x)`` (optionally ``ddof=``) of a column, with the
  spec's whole-data mean and scale;
* products of any of these (``a:b``, ``a*b``, ``C(g):x``, ``C(g):C(h)``), in formulaic's order.

Functions (``log(x)``), ``I(...)``, ``C(x, levels=...)``, other contrasts, term scales and
anything the spec does not describe fall back. Two checks guard the rest: the names generated
from the spec's term structure must be the spec's column names, and the direct block must equal
formulaic's, value for value, on a probe frame (every level, and real rows from the scan).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from formulaic import ModelSpec
from formulaic.parser.types import Factor
from formulaic.transforms.contrasts import TreatmentContrasts
from formulaic.utils.sentinels import UNSET

__all__ = [
    "CategoricalFactor",
    "DesignColumn",
    "DirectEncoder",
    "NumericFactor",
    "direct_encoder",
    "plan_encoder",
]

#: rows filled at a time: a (CHUNK_ROWS x p) slice of the block stays in the CPU cache while
#: its columns are written one by one (a whole batch's block would be re-read per column).
CHUNK_ROWS = 16384
_TRANSFORMS = {"center", "standardize", "scale"}
_NUMERICAL = Factor.Kind.NUMERICAL
_CATEGORICAL = Factor.Kind.CATEGORICAL


@dataclass(frozen=True)
class NumericFactor:
    """A numeric column, optionally centred (``center``) and divided by ``scale``."""

    column: str
    center: float | None = None
    scale: float | None = None


@dataclass(frozen=True)
class CategoricalFactor:
    """A categorical column and its levels in the spec's order."""

    column: str
    levels: tuple[Any, ...]


FactorSpec = NumericFactor | CategoricalFactor


@dataclass(frozen=True)
class DesignColumn:
    """One design column: the product, left to right, of its parts.

    A part is ``(factor, level)``: the values of numeric factor ``factor`` (``level`` -1), or
    the 0/1 indicator of level number ``level`` of categorical factor ``factor``. No parts:
    the intercept (ones).
    """

    name: str
    parts: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class DirectEncoder:
    """Encodes a batch's used rows into the design block, without formulaic."""

    factors: tuple[FactorSpec, ...]
    columns: tuple[DesignColumn, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        """The design column names (formulaic's)."""
        return tuple(c.name for c in self.columns)

    def encode(self, frame: pd.DataFrame, keep: np.ndarray | None = None) -> np.ndarray:
        """The (rows, p) C-ordered float64 block of ``frame``'s rows where ``keep`` is True
        (every row when None). Raises ValueError for a value outside a factor's levels."""
        values = [_factor_values(frame[f.column], f, keep) for f in self.factors]
        n = len(frame) if keep is None else int(np.count_nonzero(keep))
        X = np.empty((n, len(self.columns)))
        for start in range(0, n, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, n)
            block = X[start:stop]
            for j, col in enumerate(self.columns):
                block[:, j] = _column_values(col, values, start, stop)
        return X


# --------------------------------------------------------------------------- per batch


def _column_values(col: DesignColumn, values: list[np.ndarray], start: int,
                   stop: int) -> Any:
    """Rows ``start:stop`` of one design column: formulaic's ``reduce(mul, parts)``."""
    if not col.parts:
        return 1.0
    out: Any = None
    for f, level in col.parts:
        v = values[f][start:stop]
        part = v if level < 0 else v == level
        out = part if out is None else out * part
    return out


def _factor_values(s: pd.Series, factor: FactorSpec, keep: np.ndarray | None) -> np.ndarray:
    """Numeric values (native dtype, transformed as formulaic's ``scale``), or level codes."""
    if isinstance(factor, CategoricalFactor):
        codes = _codes(s, factor.levels)
        if keep is not None:
            codes = codes[keep]
        if codes.size and codes.min() < 0:
            raise ValueError(f"column '{factor.column}' holds a value that is not one of its "
                             f"{len(factor.levels)} levels")
        return codes
    v = _numbers(s)
    if keep is not None:
        v = v[keep]
    if factor.center is not None:  # formulaic's scale(): numpy.array(data) - center, / scale
        v = v - factor.center
        if factor.scale is not None:
            v = v / factor.scale
    return v


def _numbers(s: pd.Series) -> np.ndarray:
    """A numeric column as numpy in its own dtype (pandas nullable and Arrow-backed numbers:
    their numpy dtype, a placeholder 0 where missing: those rows are dropped by the caller)."""
    dtype = getattr(s.dtype, "numpy_dtype", None)
    if dtype is None:
        v = np.asarray(s.to_numpy())
    else:
        v = np.asarray(s.to_numpy(dtype=dtype, na_value=dtype.type(0)))
    if v.dtype.kind not in "biuf":
        raise ValueError(f"column '{s.name}' is not numeric ({s.dtype})")
    return v


def _codes(s: pd.Series, levels: tuple[Any, ...]) -> np.ndarray:
    """The position of each value in ``levels`` (-1: not a level, or missing)."""
    if isinstance(s.dtype, pd.CategoricalDtype) or not len(levels):
        return _pandas_codes(s, levels)
    if all(isinstance(v, str) for v in levels) and _is_text(s.dtype):
        try:
            arr = pa.array(s, from_pandas=True)
            value_set = pa.array(list(levels), type=arr.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        else:
            found = pc.index_in(arr, value_set=value_set)
            return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.intp)
    lv = np.asarray(levels)
    if s.dtype.kind in "biuf" and lv.dtype.kind in "biuf":  # numbers: a sorted lookup
        v = _numbers(s)
        order = np.argsort(lv, kind="stable")
        sorted_lv = lv[order]
        pos = np.minimum(np.searchsorted(sorted_lv, v), len(lv) - 1)
        return np.where(sorted_lv[pos] == v, order[pos], -1).astype(np.intp)
    return _pandas_codes(s, levels)


def _pandas_codes(s: pd.Series, levels: tuple[Any, ...]) -> np.ndarray:
    """Codes by pandas' own matching (categorical dtypes, mixed objects), as formulaic does."""
    return np.asarray(pd.Categorical(s, categories=list(levels)).codes, dtype=np.intp)


def _is_text(dtype: Any) -> bool:
    """Text held by pandas (``str``/``string`` dtypes, objects) or by Arrow."""
    if isinstance(dtype, pd.StringDtype) or getattr(dtype, "kind", None) == "O":
        return True
    return isinstance(dtype, pd.ArrowDtype) and (
        pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype))


# --------------------------------------------------------------------------- from the spec


class _Unsupported(Exception):
    """The spec uses something the direct encoder does not reproduce."""


def plan_encoder(spec: ModelSpec, dtypes: dict[str, Any] | None = None) -> DirectEncoder | None:
    """The direct encoder of a fitted formulaic spec, or None when the formula needs formulaic.

    Reads the spec's term structure (terms in order; per term its scoped terms, each a product
    of factors in full or reduced rank) and rebuilds each column as formulaic's row-wise
    Kronecker product does, naming it as formulaic does; the names must come out as the
    spec's own. ``dtypes`` (column -> dtype of the batches): numeric factors must be numbers.
    """
    try:
        factors: dict[str, tuple[int, FactorSpec]] = {}
        columns: list[DesignColumn] = []
        structure = spec.structure
        if not structure:
            return None
        for term in structure:
            made: list[str] = []
            for scoped in term.scoped_terms:
                if getattr(scoped, "scale", 1) != 1:
                    raise _Unsupported("a scaled term")
                per_factor = []
                for sf in scoped.factors:
                    expr = sf.factor.expr
                    if expr not in factors:
                        factors[expr] = (len(factors), _factor_spec(spec, expr, dtypes))
                    idx, fs = factors[expr]
                    per_factor.append(_factor_columns(idx, fs, expr, bool(sf.reduced)))
                made_here = _products(per_factor)
                columns += made_here
                made += [c.name for c in made_here]
            if made != [str(c) for c in term.columns]:
                return None
        if [c.name for c in columns] != [str(c) for c in spec.column_names]:
            return None
        ordered = tuple(fs for _, fs in sorted(factors.values(), key=lambda t: t[0]))
        return DirectEncoder(ordered, tuple(columns))
    except _Unsupported:
        return None


def _factor_spec(spec: ModelSpec, expr: str, dtypes: dict[str, Any] | None) -> FactorSpec:
    """What one factor expression means, from the spec's encoder and transform state."""
    state = spec.encoder_state.get(expr)
    if state is None:
        raise _Unsupported(expr)
    kind, enc = state
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise _Unsupported(expr) from None
    if isinstance(tree, ast.Name):
        column = tree.id
        if kind == _NUMERICAL:
            _check_numeric(column, dtypes)
            return NumericFactor(column)
        if kind == _CATEGORICAL:
            return _categorical(column, enc)
        raise _Unsupported(expr)
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name)
            and len(tree.args) == 1 and isinstance(tree.args[0], ast.Name)):
        raise _Unsupported(expr)
    name, column = tree.func.id, tree.args[0].id
    if name == "C" and not tree.keywords and kind == _CATEGORICAL:
        return _categorical(column, enc)
    if name in _TRANSFORMS and kind == _NUMERICAL \
            and all(k.arg == "ddof" for k in tree.keywords):
        st = spec.transform_state.get(expr)
        if not isinstance(st, dict) or st.get("center") is None:
            raise _Unsupported(expr)
        center = _scalar(st["center"])
        scale = st.get("scale")
        if (name == "center") != (scale is None):
            raise _Unsupported(expr)
        _check_numeric(column, dtypes)
        return NumericFactor(column, center, None if scale is None else _scalar(scale))
    raise _Unsupported(expr)


def _scalar(v: Any) -> float:
    a = np.asarray(v, dtype=np.float64)
    if a.shape != ():
        raise _Unsupported("a transform state that is not one number")
    return float(a)


def _check_numeric(column: str, dtypes: dict[str, Any] | None) -> None:
    if dtypes is None or column not in dtypes:
        return
    dtype = dtypes[column]
    kind = getattr(getattr(dtype, "numpy_dtype", dtype), "kind", None)
    if isinstance(dtype, pd.CategoricalDtype) or kind not in ("b", "i", "u", "f"):
        raise _Unsupported(column)


def _categorical(column: str, enc: dict[str, Any]) -> CategoricalFactor:
    levels = enc.get("categories")
    contrasts = enc.get("contrasts")
    con = getattr(contrasts, "contrasts", None)
    if levels is None or type(con) is not TreatmentContrasts \
            or getattr(con, "base", None) is not UNSET \
            or list(getattr(contrasts, "levels", levels)) != list(levels):
        raise _Unsupported(column)
    return CategoricalFactor(column, tuple(levels))


def _factor_columns(idx: int, fs: FactorSpec, expr: str,
                    reduced: bool) -> list[tuple[str, tuple[int, int]]]:
    """One factor's columns in a term: (name, part), formulaic's names."""
    if isinstance(fs, NumericFactor):
        return [(expr, (idx, -1))]
    fmt = "{name}[T.{field}]" if reduced else "{name}[{field}]"
    first = 1 if reduced else 0
    return [(fmt.format(name=expr, field=lv), (idx, k))
            for k, lv in enumerate(fs.levels) if k >= first]


def _products(per_factor: Sequence[list[tuple[str, tuple[int, int]]]]) -> list[DesignColumn]:
    """The row-wise Kronecker product of the factors' columns, in formulaic's order: it runs
    ``itertools.product`` over the factors reversed and reverses each tuple, so the first
    factor varies fastest."""
    combos: list[list[tuple[str, tuple[int, int]]]] = [[]]
    for cols in reversed(per_factor):
        combos = [[*rest, c] for rest in combos for c in cols]
    out = []
    for combo in combos:
        parts = combo[::-1]
        out.append(DesignColumn(":".join(p[0] for p in parts) if parts else "Intercept",
                                tuple(p[1] for p in parts)))
    return out


# --------------------------------------------------------------------------- checked


def direct_encoder(
    spec: ModelSpec, terms: Sequence[str], probe: pd.DataFrame, context: dict[str, Any],
    dtypes: dict[str, Any] | None = None,
) -> DirectEncoder | None:
    """:func:`plan_encoder`, accepted only if it gives ``terms`` and formulaic's exact block on
    ``probe`` (rows without missing values in the formula's columns: every categorical level,
    and real rows); None otherwise, and the engine keeps formulaic."""
    enc = plan_encoder(spec, dtypes)
    if enc is None or enc.terms != tuple(terms) or len(probe) == 0:
        return None
    try:
        mm = spec.get_model_matrix(probe, context=dict(context))
        want = np.asarray(mm.to_numpy(dtype=float), dtype=float)
        got = enc.encode(probe)
    except Exception:  # noqa: BLE001 - any failure on the probe: keep formulaic
        return None
    if tuple(str(c) for c in mm.columns) != enc.terms or want.shape != got.shape:
        return None
    if not np.array_equal(want, got, equal_nan=True):
        return None
    return enc

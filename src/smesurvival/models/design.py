"""Formulas to arrays, safely: a whitelist check, then formulaic builds the design.

User formulas are data, not code (DESIGN.md principle 7): every factor of a formula is parsed
with :mod:`ast` and may only use column names, numbers, arithmetic and a small set of
transforms. Rows with missing values in any variable the formula uses are dropped *before*
materialising and counted per column, so the sample flow is exact.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, ModelSpec
from formulaic.transforms import center as _center
from formulaic.transforms import scale as _scale

from smesurvival.data.flow import SampleFlow
from smesurvival.errors import DataValidationError, FormulaError
from smesurvival.models.survdata import file_lines

#: transforms a formula may call; anything else is refused before evaluation.
ALLOWED_FUNCTIONS: dict[str, Any] = {
    "log": np.log,
    "log1p": np.log1p,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "center": _center,
    "standardize": _scale,
    "scale": _scale,
}
_FORMULAIC_BUILTINS = {"C", "I"}
_ALLOWED_NODES = (
    ast.Expression, ast.Call, ast.Name, ast.Load, ast.Constant, ast.BinOp, ast.UnaryOp,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd, ast.keyword,
    ast.List, ast.Tuple,
)


def _check_expression(expr: str, columns: set[str]) -> set[str]:
    """Refuse any factor expression outside the whitelist; return the columns it reads."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise FormulaError(f"formula term '{expr}' is not a valid expression: {e.msg}") from None
    used: set[str] = set()
    allowed_funcs = set(ALLOWED_FUNCTIONS) | _FORMULAIC_BUILTINS
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise FormulaError(
                f"formula term '{expr}' uses '{type(node).__name__}', which formulas may not "
                f"contain; allowed are column names, numbers, + - * / **, and the functions "
                f"{', '.join(sorted(allowed_funcs))}"
            )
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in allowed_funcs:
                name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
                raise FormulaError(
                    f"formula term '{expr}' calls '{name}', which is not allowed; use one of "
                    f"{', '.join(sorted(allowed_funcs))}"
                )
            for kw in node.keywords:
                if kw.arg not in {"levels", "contr", "ddof"}:
                    raise FormulaError(f"formula term '{expr}': keyword '{kw.arg}' is not allowed")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str):
            raise FormulaError(f"formula term '{expr}' contains a constant of unsupported type")
    call_names = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in call_names:
            if node.id not in columns:
                raise FormulaError(_unknown_column_message(node.id, columns))
            used.add(node.id)
    return used


def _unknown_column_message(name: str, columns: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(columns), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"formula names column '{name}', which is not in the data.{hint}"


@dataclass(frozen=True)
class ParsedFormula:
    """A checked formula: its text, outcome column (if any) and the columns it reads."""

    text: str
    outcome: str | None
    rhs: str
    variables: tuple[str, ...]  # every data column the formula reads, in first-use order


def parse_formula(formula: str, columns: list[str] | set[str]) -> ParsedFormula:
    """Check a Wilkinson formula (``y ~ a * b + C(g)`` or right-hand side only) against columns."""
    cols = set(columns)
    if not isinstance(formula, str) or not formula.strip():
        raise FormulaError("the formula is empty; write e.g. 'survived ~ export_ratio * rd_intensity'")
    try:
        f = Formula(formula)
    except Exception as e:  # formulaic raises several parser exception types
        raise FormulaError(f"formula '{formula}' could not be parsed: {e}") from None
    outcome: str | None = None
    if hasattr(f, "lhs"):
        lhs_terms = list(f.lhs)
        if len(lhs_terms) != 1 or len(lhs_terms[0].factors) != 1:
            raise FormulaError(f"formula '{formula}': the left-hand side must be one outcome column")
        outcome = lhs_terms[0].factors[0].expr
        if outcome not in cols:
            raise FormulaError(_unknown_column_message(outcome, cols))
        rhs_formula = f.rhs
        rhs_text = formula.split("~", 1)[1].strip()
    else:
        rhs_formula = f
        rhs_text = formula.strip()
    used: list[str] = [outcome] if outcome else []
    for term in rhs_formula:
        for factor in term.factors:
            expr = factor.expr
            if expr in {"1", "0"}:
                continue
            names = {expr} if expr in cols else _check_expression(expr, cols)
            used.extend(sorted(names - set(used)))
    return ParsedFormula(formula, outcome, rhs_text, tuple(dict.fromkeys(used)))


@dataclass(frozen=True)
class Design:
    """The materialised design: X, y, row positions used, term names and the encoder spec."""

    X: np.ndarray
    y: np.ndarray | None
    terms: tuple[str, ...]
    rows: np.ndarray  # positions (0-based) in the input frame of the rows used
    flow: SampleFlow
    spec: ModelSpec
    formula: ParsedFormula

    @property
    def has_intercept(self) -> bool:
        return "Intercept" in self.terms


def drop_missing(
    data: pd.DataFrame, variables: tuple[str, ...], flow: SampleFlow
) -> tuple[np.ndarray, SampleFlow]:
    """Keep rows complete in ``variables``; each dropped row is charged to its first missing column."""
    keep = np.ones(len(data), dtype=bool)
    for col in variables:
        miss = data[col].isna().to_numpy()
        if not miss.any():
            continue
        miss = miss & keep
        n = int(miss.sum())
        if n:
            flow = flow.drop(f"missing value in column '{col}'", n, "missing", col)
            keep &= ~miss
    return np.flatnonzero(keep), flow


def build_design(
    formula: str, data: pd.DataFrame, flow: SampleFlow | None = None,
    extra_variables: tuple[str, ...] = (),
) -> Design:
    """Check the formula, drop incomplete rows (counted), and materialise X (and y)."""
    parsed = parse_formula(formula, list(data.columns))
    flow = flow if flow is not None else SampleFlow(len(data))
    rows, flow = drop_missing(data, parsed.variables + tuple(extra_variables), flow)
    if rows.size == 0:
        raise FormulaError("no rows are left after dropping rows with missing values")
    check_text_variables(data, parsed.variables, rows, parsed.rhs)
    sub = data.iloc[rows].reset_index(drop=True)
    try:
        spec = ModelSpec.from_spec(Formula(parsed.rhs), na_action="raise", output="pandas")
        mm = spec.get_model_matrix(sub, context=dict(ALLOWED_FUNCTIONS))
    except FormulaError:
        raise
    except Exception as e:
        raise FormulaError(f"formula '{formula}' could not be evaluated on the data: {e}") from None
    X = np.asarray(mm.to_numpy(dtype=float), dtype=float, order="C")
    y = None
    if parsed.outcome is not None:
        y = _as_binary_or_numeric(sub[parsed.outcome], parsed.outcome)
    return Design(X, y, tuple(str(c) for c in mm.columns), rows, flow, mm.model_spec, parsed)


_MAX_LEVELS = 1000  # a text column with more distinct values than this (and than half the rows)


def check_text_variables(data: pd.DataFrame, variables: tuple[str, ...], rows: np.ndarray,
                         rhs: str = "") -> None:
    """Text columns a formula reads, checked before they become dummy columns.

    A column of numbers with a few text cells ('abc', 'n/a') would otherwise be taken as a
    category with one level per distinct number; a column of mostly distinct text (an
    identifier) as thousands of dummies. Both stop with the column and the file lines. A
    column the formula wraps in ``C()`` is meant as a category: mixed codes ('10', '3A') pass."""
    for c in variables:
        col = data[c]
        if not (col.dtype == object or pd.api.types.is_string_dtype(col.dtype)):
            continue
        vals = col.iloc[rows]
        num = pd.to_numeric(vals, errors="coerce")
        ok = num.notna().to_numpy()
        explicit = re.search(rf"\bC\(\s*{re.escape(c)}\s*[,)]", rhs) is not None
        if not explicit and ok.any() and ok.mean() >= 0.5:
            bad = ~ok
            examples = ", ".join(repr(str(v)) for v in vals[bad].unique()[:3])
            raise DataValidationError(
                f"column '{c}' holds numbers, but {file_lines(bad, rows)} hold text ({examples}): "
                "fix those cells or leave them blank (blank cells are dropped and counted)"
            )
        levels = vals.nunique()
        if levels > _MAX_LEVELS and levels > 0.5 * rows.size:
            raise DataValidationError(
                f"column '{c}' has {levels:,} distinct text values in {rows.size:,} rows: as a "
                f"category it would give {levels - 1:,} dummy columns. It looks like an identifier "
                "or free text: leave it out of the formula (an identifier can be a cluster= column)"
            )


def _as_binary_or_numeric(col: pd.Series, name: str) -> np.ndarray:
    try:
        y = pd.to_numeric(col, errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError):
        raise FormulaError(f"outcome column '{name}' must be numeric (0/1 for binary models)") from None
    return y


def encode_new(spec: ModelSpec, newdata: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Encode new rows exactly as the fit was encoded (same levels, same transform state)."""
    try:
        mm = spec.get_model_matrix(newdata, context=dict(ALLOWED_FUNCTIONS), na_action="raise")
    except Exception as e:
        raise FormulaError(f"new data could not be encoded with the fitted formula: {e}") from None
    return np.asarray(mm.to_numpy(dtype=float), dtype=float), [str(c) for c in mm.columns]


def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    """JSON-safe state of a formulaic spec: formula, transform state, categorical levels."""
    enc: dict[str, Any] = {}
    for name, (kind, state) in spec.encoder_state.items():
        if "categories" in state:
            enc[name] = {"kind": "categorical", "categories": [_py(c) for c in state["categories"]]}
        else:
            enc[name] = {"kind": str(getattr(kind, "value", kind))}
    tr = {k: {kk: _py(vv) for kk, vv in v.items()} for k, v in spec.transform_state.items()}
    # str(formula) drops a removed intercept ("0 + x" prints as "x"): record it explicitly
    try:
        intercept = "Intercept" in [str(c) for c in spec.column_names]
    except RuntimeError:  # a spec built by spec_from_dict has no structure until first used
        intercept = any(str(t) == "1" for t in spec.formula)
    return {"formula": str(spec.formula), "intercept": intercept, "encoder_state": enc,
            "transform_state": tr}


def spec_from_dict(d: dict[str, Any]) -> ModelSpec:
    """Rebuild a formulaic spec saved by :func:`spec_to_dict` (for prediction after loading)."""
    from formulaic.parser.types import Factor

    enc: dict[str, Any] = {}
    for name, v in d["encoder_state"].items():
        if v["kind"] == "categorical":
            enc[name] = (Factor.Kind.CATEGORICAL, {"categories": list(v["categories"])})
        else:
            enc[name] = (Factor.Kind.NUMERICAL, {})
    formula = d["formula"] if d.get("intercept", True) else f"0 + {d['formula']}"
    return ModelSpec(
        formula=formula, transform_state=d["transform_state"], encoder_state=enc,
        output="pandas",
    )


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v

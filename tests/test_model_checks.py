"""Failures are detected and named: separation, rank deficiency, bad outcomes, unsafe formulas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import REF
from smesurvival.errors import (
    FormulaError,
    RankDeficientError,
    SeparationError,
    UsageError,
)
from smesurvival.models.design import build_design, parse_formula
from smesurvival.models.fit import fit


@pytest.fixture(scope="module")
def endometrial() -> pd.DataFrame:
    return pd.read_csv(REF / "data" / "brglm2_endometrial.csv")


def test_quasi_complete_separation_is_named(endometrial: pd.DataFrame) -> None:
    """brglm2::endometrial: NV = 1 only with HG = 1 (13 of 13 rows). R's glm() reports
    'converged' with NV = 18.19 (SE 1716) — silent garbage we must refuse."""
    with pytest.raises(SeparationError) as e:
        fit("HG ~ NV + PI + EH", endometrial)
    msg = str(e.value)
    assert "quasi-complete separation" in msg
    assert "'NV'" in msg and "'PI'" not in msg and "'EH'" not in msg
    assert "13 row(s)" in msg
    assert "Firth" in msg


def test_complete_separation() -> None:
    d = pd.DataFrame({"y": [0, 0, 0, 1, 1, 1], "x": [1.0, 2, 3, 4, 5, 6]})
    with pytest.raises(SeparationError, match="complete separation"):
        fit("y ~ x", d)


@pytest.mark.parametrize("model", ["probit", "cloglog"])
def test_separation_other_links(endometrial: pd.DataFrame, model: str) -> None:
    with pytest.raises(SeparationError, match="'NV'"):
        fit("HG ~ NV + PI + EH", endometrial, model=model)  # type: ignore[arg-type]


def test_no_false_separation_alarm(mroz: pd.DataFrame) -> None:
    r = fit("lfp ~ k5 + age + wcyes", mroz)
    assert r.converged and r.diagnostics.n_fitted_extreme == 0


def test_rank_deficiency_names_the_dependent_column() -> None:
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"y": rng.binomial(1, 0.5, 200), "a": rng.normal(size=200),
                      "b": rng.normal(size=200)})
    d["c"] = 2 * d["a"] - d["b"]
    with pytest.raises(RankDeficientError) as e:
        fit("y ~ a + b + c", d)
    msg = str(e.value)
    assert "'c'" in msg and "+2*'a'" in msg and "-1*'b'" in msg


def test_constant_column_is_collinear_with_intercept() -> None:
    d = pd.DataFrame({"y": [0, 1, 0, 1, 1, 0], "k": [3.0] * 6, "x": [1.0, 2, 3, 4, 5, 7]})
    with pytest.raises(RankDeficientError, match="'k'|'Intercept'"):
        fit("y ~ x + k", d)


def test_zero_column_is_named() -> None:
    d = pd.DataFrame({"y": [0, 1, 0, 1, 1, 0], "k": [0.0] * 6, "x": [1.0, 2, 3, 4, 5, 7]})
    with pytest.raises(RankDeficientError, match="'k'.*zero in every used row"):
        fit("y ~ x + k", d)


def test_outcome_must_be_binary() -> None:
    d = pd.DataFrame({"y": [0, 1, 2, 1], "x": [1.0, 2, 3, 4]})
    with pytest.raises(FormulaError, match="'y' must be 0/1.*2"):
        fit("y ~ x", d)


@pytest.mark.parametrize("formula,fragment", [
    ("y ~ __import__('os').system('true')", "parsed"),
    ("y ~ x.real", "Attribute"),
    ("y ~ np.log(x)", "np.log"),
    ("y ~ eval('x')", "eval"),
    ("y ~ x[0]", "Subscript"),
    ("y ~ lambda_(x)", "lambda_"),
    ("y ~ nosuch", "not in the data"),
    ("nosuch ~ x", "not in the data"),
    ("y ~ xx", "Did you mean 'x'"),
])
def test_formulas_are_data_not_code(formula: str, fragment: str) -> None:
    d = pd.DataFrame({"y": [0, 1, 0, 1], "x": [1.0, 2, 3, 4]})
    with pytest.raises(FormulaError, match=fragment):
        parse_formula(formula, list(d.columns))


def test_whitelisted_transforms_work() -> None:
    d = pd.DataFrame({"y": [0, 1, 0, 1, 1], "x": [1.0, 2, 3, 4, 6], "g": list("ababa")})
    des = build_design("y ~ log(x) + center(x) + standardize(x) + I(x ** 2) + C(g)", d)
    assert des.terms == ("Intercept", "log(x)", "center(x)", "standardize(x)", "I(x ** 2)", "C(g)[T.b]")
    np.testing.assert_allclose(des.X[:, 2], d.x - d.x.mean())
    np.testing.assert_allclose(des.X[:, 3], (d.x - d.x.mean()) / d.x.std(ddof=1))


def test_missing_values_are_counted_per_column() -> None:
    d = pd.DataFrame({"y": [0, 1, None, 1, 1, 0, 1], "x": [1.0, None, 3, None, 5, 6, 2],
                      "z": [1.0, 2, 3, 4, None, 0, 1]})
    des = build_design("y ~ x + z", d)
    assert des.flow.dropped_by_reason() == {
        "missing value in column 'y'": 1, "missing value in column 'x'": 2,
        "missing value in column 'z'": 1,
    }
    assert des.flow.n_used == 3 and list(des.rows) == [0, 5, 6]


def test_options_list_valid_choices(mroz: pd.DataFrame) -> None:
    with pytest.raises(UsageError, match="classical, hc0, hc1, cluster"):
        fit("lfp ~ k5", mroz, vcov="hc3")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="needs a cluster"):
        fit("lfp ~ k5", mroz, vcov="cluster")
    with pytest.raises(UsageError, match="survey weights need a robust"):
        fit("lfp ~ k5", mroz.assign(w=1.0), weights="w", weights_kind="survey")


def test_non_convergence_is_reported(mroz: pd.DataFrame) -> None:
    from smesurvival.errors import ConvergenceError

    with pytest.raises(ConvergenceError, match="did not converge in 1 iterations"):
        fit("lfp ~ k5 + age + inc", mroz, model="cloglog", max_iter=1)

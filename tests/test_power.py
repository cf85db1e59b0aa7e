"""Power by simulation: the stacked fits give exactly the verdicts run_study gives per cohort."""

from __future__ import annotations

import numpy as np
import pytest

from smesurvival.data.synthetic import simulate_cohort
from smesurvival.errors import UsageError
from smesurvival.inference.stacked import CONVERGED, fit_stacked
from smesurvival.models.families import FAMILIES
from smesurvival.models.fit import fit
from smesurvival.study import load_spec, run_study
from smesurvival.study.power import simulate_power


def test_stacked_fits_equal_single_fits() -> None:
    rng = np.random.default_rng(3)
    R, n = 6, 400
    X = np.concatenate([np.ones((R, n, 1)), rng.normal(size=(R, n, 2))], axis=2)
    y = rng.binomial(1, 1 / (1 + np.exp(-(0.3 + X[:, :, 1] - 0.5 * X[:, :, 2]))))
    for link in ("logit", "probit", "cloglog"):
        st = fit_stacked(X, y.astype(float), FAMILIES[link])
        assert (st.status == CONVERGED).all()
        for r in range(R):
            import pandas as pd

            d = pd.DataFrame({"y": y[r], "a": X[r, :, 1], "b": X[r, :, 2]})
            one = fit("y ~ a + b", d, model=link)  # type: ignore[arg-type]
            np.testing.assert_allclose(st.params[r], one.params, rtol=1e-7, atol=1e-10)
            np.testing.assert_allclose(st.se[r], one.se, rtol=1e-6)


def test_singular_cohort_is_flagged_not_averaged() -> None:
    rng = np.random.default_rng(4)
    X = np.concatenate([np.ones((2, 100, 1)), rng.normal(size=(2, 100, 1)), np.zeros((2, 100, 1))], axis=2)
    X[0, :, 2] = rng.normal(size=100)  # cohort 1 has an all-zero column: singular
    y = rng.binomial(1, 0.4, size=(2, 100)).astype(float)
    st = fit_stacked(X, y, FAMILIES["logit"])
    assert st.status[0] == CONVERGED and st.status[1] != CONVERGED
    assert np.isnan(st.se[1]).all()


def test_power_verdicts_equal_run_study_on_each_cohort() -> None:
    """The power simulation splits one big draw into cohorts: refit each with run_study."""
    spec = load_spec("lee2012")
    n, reps, seed = 1612, 3, 11
    res = simulate_power(spec, [n], reps, seed=seed)
    big = simulate_cohort(n * reps, seed=seed).frame
    for r in range(reps):
        cohort = big.iloc[r * n:(r + 1) * n].reset_index(drop=True)
        study = run_study(spec, cohort, robustness=False)
        want = [v.supported for v in study.verdicts]
        assert list(res.supported[0][r]) == want
    assert res.power.shape == (1, 7) and res.failed.sum() == 0


def test_user_effects_change_power() -> None:
    spec = load_spec("lee2012")
    null = simulate_power(spec, [800], 40, seed=2, effects={"export_ratio": 0.0})
    strong = simulate_power(spec, [800], 40, seed=2, effects={"export_ratio": -0.6})
    assert strong.power[0, 0] > null.power[0, 0]
    assert null.effects["export_ratio"] == 0.0
    with pytest.raises(UsageError, match="unknown effect"):
        simulate_power(spec, [800], 5, effects={"nope": 1.0})

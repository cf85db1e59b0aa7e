"""Hypothesis verdicts: a directional Wald test of one term in one fitted step."""

from __future__ import annotations

from scipy import stats

from smesurvival.models.result import FitResult
from smesurvival.study.result import Verdict
from smesurvival.study.spec import Hypothesis

HAZARD_MODELS = ("cox", "discrete", "finegray")


def judge(h: Hypothesis, fit: FitResult) -> Verdict:
    """Supported when the estimate has the expected sign and the test's p-value is below alpha.

    One-sided: p = P(Z > z) for '+', P(Z < z) for '-'. Two-sided: p = 2 P(Z > |z|) and the sign
    must still match the hypothesis. Hypotheses speak of survival: in a hazard model (Cox,
    discrete-time hazard, Fine–Gray) better survival is a negative coefficient, so the expected
    sign is flipped.
    """
    hazard = fit.model in HAZARD_MODELS
    sign = ("-" if h.sign == "+" else "+") if hazard else h.sign
    j = fit.index(h.term)
    est, se = float(fit.params[j]), float(fit.se[j])
    z = est / se
    if h.test == "one-sided":
        p = float(stats.norm.sf(z) if sign == "+" else stats.norm.cdf(z))
    else:
        p = float(2.0 * stats.norm.sf(abs(z)))
    right_sign = est > 0 if sign == "+" else est < 0
    ci = fit.conf_int().iloc[j]
    return Verdict(
        hypothesis=h.id, statement=h.statement, term=h.term, expected_sign=sign, test=h.test,
        alpha=h.alpha, step=h.step, estimate=est, std_error=se, statistic=z, p_value=p,
        conf_low=float(ci["conf_low"]), conf_high=float(ci["conf_high"]),
        supported=bool(right_sign and p < h.alpha), published=h.published,
        scale="hazard" if hazard else "survival",
    )

"""Binary-response families: link, inverse link and the derivatives the IRLS kernel needs.

One frozen object per link (logit, probit, cloglog) so every estimator shares the same maths.
All functions are vectorised and numerically safe in the tails (log-space where it matters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

Array = np.ndarray


def _logit_logp(eta: Array) -> tuple[Array, Array]:
    """log P(y=1), log P(y=0) under the logit link."""
    return -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta)


def _logit_d1(eta: Array) -> Array:
    """dmu/deta for the logit link."""
    mu = special.expit(eta)
    return mu * (1.0 - mu)


def _probit_logp(eta: Array) -> tuple[Array, Array]:
    return special.log_ndtr(eta), special.log_ndtr(-eta)


def _probit_d1(eta: Array) -> Array:
    return np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi)


def _cloglog_logp(eta: Array) -> tuple[Array, Array]:
    # mu = 1 - exp(-exp(eta)); log(1 - mu) = -exp(eta); log(mu) = log(-expm1(-exp(eta)))
    e = np.exp(np.minimum(eta, 700.0))
    log1m = -e
    logmu = np.log(-np.expm1(-e))
    return logmu, log1m


def _cloglog_d1(eta: Array) -> Array:
    e = np.exp(np.minimum(eta, 700.0))
    return e * np.exp(-e)


def _logp_and_hazards(
    logp: Callable[[Array], tuple[Array, Array]], d1: Callable[[Array], Array], eta: Array
) -> tuple[Array, Array, Array, Array]:
    """log mu, log(1-mu), and the ratios r1 = mu'/mu, r0 = mu'/(1-mu) computed stably."""
    lp1, lp0 = logp(eta)
    ld = np.log(np.maximum(d1(eta), 1e-300))
    r1 = np.exp(ld - lp1)
    r0 = np.exp(ld - lp0)
    return lp1, lp0, r1, r0


@dataclass(frozen=True)
class Family:
    """A binomial family with one link: everything the partial-sum kernel needs."""

    name: str
    link: str
    log_probs: Callable[[Array], tuple[Array, Array]]
    dmu_deta: Callable[[Array], Array]
    canonical: bool

    def mean(self, eta: Array) -> Array:
        """Inverse link: P(y = 1 | eta)."""
        return np.exp(self.log_probs(eta)[0])

    def link_fun(self, mu: Array) -> Array:
        mu = np.asarray(mu, dtype=float)
        if self.link == "logit":
            return special.logit(mu)
        if self.link == "probit":
            return special.ndtri(mu)
        return np.log(-np.log1p(-mu))

    def pieces(self, eta: Array, y: Array) -> tuple[Array, Array, Array, Array]:
        """Per-row log-likelihood, score factor u (dl/deta), expected and observed information.

        For a Bernoulli y with mean mu(eta): l = y log mu + (1-y) log(1-mu);
        u = y r1 - (1-y) r0 with r1 = mu'/mu and r0 = mu'/(1-mu); expected information
        mu'^2 / (mu (1-mu)) = mu' (r1 + r0); observed information -du/deta, equal to the
        expected one for the canonical (logit) link.
        """
        lp1, lp0, r1, r0 = _logp_and_hazards(self.log_probs, self.dmu_deta, eta)
        ll = y * lp1 + (1.0 - y) * lp0
        u = y * r1 - (1.0 - y) * r0
        d1 = self.dmu_deta(eta)
        w_exp = d1 * (r1 + r0)
        if self.canonical:
            return ll, u, w_exp, w_exp
        # -du/deta with r1' = r1 k - r1^2 and r0' = r0 k + r0^2, where k = mu''/mu'
        d2_over_d1 = self._d2_over_d1(eta)
        w_obs = y * (r1 * r1 - r1 * d2_over_d1) + (1.0 - y) * (r0 * r0 + r0 * d2_over_d1)
        return ll, u, w_exp, w_obs

    def _d2_over_d1(self, eta: Array) -> Array:
        """mu''/mu' for the non-canonical links."""
        if self.link == "probit":
            return -eta
        e = np.exp(np.minimum(eta, 700.0))  # cloglog: mu' = e exp(-e), mu'' = mu' (1 - e)
        return 1.0 - e


LOGIT = Family("logit", "logit", _logit_logp, _logit_d1, canonical=True)
PROBIT = Family("probit", "probit", _probit_logp, _probit_d1, canonical=False)
CLOGLOG = Family("cloglog", "cloglog", _cloglog_logp, _cloglog_d1, canonical=False)

FAMILIES: dict[str, Family] = {f.name: f for f in (LOGIT, PROBIT, CLOGLOG)}

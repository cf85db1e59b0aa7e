"""Binary-response families: link, inverse link and the derivatives the IRLS kernel needs.

One frozen object per link (logit, probit, cloglog) so every estimator shares the same maths.
Everything is computed in log space or from closed forms so that separated data (linear
predictors of +-50 or more) give finite numbers instead of NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

Array = np.ndarray
_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


# Each link supplies: log P(y=1), log P(y=0); log mu'; the ratios r1 = mu'/mu and
# r0 = mu'/(1-mu); and k = mu''/mu' (for the observed information).

def _logit_logp(eta: Array) -> tuple[Array, Array]:
    return -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta)


def _logit_ratios(eta: Array) -> tuple[Array, Array]:
    mu = special.expit(eta)
    return 1.0 - mu, mu


def _logit_k(eta: Array) -> Array:
    return 1.0 - 2.0 * special.expit(eta)


def _logit_log_dmu(eta: Array) -> Array:
    return -np.logaddexp(0.0, -eta) - np.logaddexp(0.0, eta)


def _probit_logp(eta: Array) -> tuple[Array, Array]:
    return special.log_ndtr(eta), special.log_ndtr(-eta)


def _probit_log_dmu(eta: Array) -> Array:
    return -0.5 * eta * eta - _LOG_SQRT_2PI


def _probit_ratios(eta: Array) -> tuple[Array, Array]:
    ld = _probit_log_dmu(eta)
    return np.exp(ld - special.log_ndtr(eta)), np.exp(ld - special.log_ndtr(-eta))


def _probit_k(eta: Array) -> Array:
    return -eta


def _cloglog_e(eta: Array) -> Array:
    return np.exp(np.minimum(eta, 700.0))


def _cloglog_logp(eta: Array) -> tuple[Array, Array]:
    # mu = 1 - exp(-e), e = exp(eta): log mu = log(-expm1(-e)), log(1 - mu) = -e
    e = _cloglog_e(eta)
    return np.log(-np.expm1(-e)), -e


def _cloglog_log_dmu(eta: Array) -> Array:
    return np.minimum(eta, 700.0) - _cloglog_e(eta)


def _cloglog_ratios(eta: Array) -> tuple[Array, Array]:
    e = _cloglog_e(eta)
    with np.errstate(over="ignore"):
        r1 = np.where(e > 700.0, 0.0, e / np.expm1(np.minimum(e, 700.0)))
    return r1, e


def _cloglog_k(eta: Array) -> Array:
    return 1.0 - _cloglog_e(eta)


class Scratch:
    """Preallocated per-row buffers for :meth:`Family.kernel_pieces` on blocks of up to ``m`` rows."""

    def __init__(self, m: int) -> None:
        self.buf = np.empty((4, m))
        self.mask = np.empty(m, dtype=bool)

    def views(self, m: int) -> tuple[Array, Array, Array, Array, Array]:
        b = self.buf
        return b[0, :m], b[1, :m], b[2, :m], b[3, :m], self.mask[:m]


def _logit_block(eta: Array, y: Array, scratch: Scratch) -> tuple[Array, Array, Array]:
    """Logit log-likelihood, u = y - mu and v = mu (1 - mu) per row, in place in ``scratch``.

    From one exponential t = exp(-|eta|): q = t / (1 + t) is the smaller of mu and 1 - mu
    (exact in both tails), log(1 + exp(eta)) = max(eta, 0) + log1p(t), and
    l = (y eta - max(eta, 0)) - log1p(t), whose bracket is exact for a 0/1 outcome.
    """
    t, q, a, b, pos = scratch.views(eta.shape[0])
    np.abs(eta, out=t)
    np.negative(t, out=t)
    np.exp(t, out=t)  # t = exp(-|eta|)
    np.add(t, 1.0, out=q)
    np.divide(t, q, out=q)  # q = min(mu, 1 - mu)
    np.log1p(t, out=t)
    np.maximum(eta, 0.0, out=a)
    np.multiply(y, eta, out=b)
    np.subtract(b, a, out=b)
    np.subtract(b, t, out=t)  # t = log-likelihood
    np.subtract(1.0, q, out=a)  # a = max(mu, 1 - mu)
    np.greater_equal(eta, 0.0, out=pos)
    np.copyto(b, q)
    np.copyto(b, a, where=pos)  # b = mu
    np.subtract(y, b, out=b)  # b = u
    np.multiply(q, a, out=q)  # q = v
    return t, b, q


@dataclass(frozen=True)
class Family:
    """A binomial family with one link: everything the partial-sum kernel needs."""

    name: str
    link: str
    log_probs: Callable[[Array], tuple[Array, Array]]
    log_dmu: Callable[[Array], Array]
    ratios: Callable[[Array], tuple[Array, Array]]
    d2_over_d1: Callable[[Array], Array]
    canonical: bool
    block: Callable[[Array, Array, Scratch], tuple[Array, Array, Array]] | None = None

    def mean(self, eta: Array) -> Array:
        """Inverse link: P(y = 1 | eta)."""
        return np.exp(self.log_probs(eta)[0])

    def dmu_deta(self, eta: Array) -> Array:
        return np.exp(self.log_dmu(eta))

    def link_fun(self, mu: Array) -> Array:
        mu = np.asarray(mu, dtype=float)
        if self.link == "logit":
            return special.logit(mu)
        if self.link == "probit":
            return special.ndtri(mu)
        return np.log(-np.log1p(-mu))

    def pieces(self, eta: Array, y: Array) -> tuple[Array, Array, Array, Array]:
        """Per-row log-likelihood, score factor u = dl/deta, expected and observed information.

        For a Bernoulli y with mean mu(eta): l = y log mu + (1-y) log(1-mu);
        u = y r1 - (1-y) r0 with r1 = mu'/mu and r0 = mu'/(1-mu); expected information
        mu'^2 / (mu (1-mu)) = mu' (r1 + r0); observed information -du/deta
        = y r1 (r1 - k) + (1-y) r0 (r0 + k) with k = mu''/mu' (equal to the expected
        information for the canonical logit link).
        """
        lp1, lp0 = self.log_probs(eta)
        r1, r0 = self.ratios(eta)
        ll = y * lp1 + (1.0 - y) * lp0
        u = y * r1 - (1.0 - y) * r0
        w_exp = self.dmu_deta(eta) * (r1 + r0)
        if self.canonical:
            return ll, u, w_exp, w_exp
        k = self.d2_over_d1(eta)
        if self.link == "cloglog":  # r0 + k == 1 exactly; avoids inf - inf for large eta
            w_obs = y * r1 * (r1 - k) + (1.0 - y) * r0
        else:
            w_obs = y * r1 * (r1 - k) + (1.0 - y) * r0 * (r0 + k)
        return ll, u, w_exp, w_obs

    def kernel_pieces(
        self, eta: Array, y: Array, information: str, scratch: Scratch | None = None,
    ) -> tuple[Array, Array, Array]:
        """Per-row log-likelihood, score factor u and information weight v for one block.

        ``v`` is the expected information, or the observed one when ``information`` is
        ``"observed"`` (the same for the canonical logit). With ``scratch`` the logit is
        computed in place in its buffers (overwritten by the next call); the returned arrays
        may be modified by the caller.
        """
        if self.block is not None and scratch is not None:
            return self.block(eta, y, scratch)
        ll, u, w_exp, w_obs = self.pieces(eta, y)
        return ll, u, (w_obs if information == "observed" else w_exp)


LOGIT = Family("logit", "logit", _logit_logp, _logit_log_dmu, _logit_ratios, _logit_k, True,
               _logit_block)
PROBIT = Family("probit", "probit", _probit_logp, _probit_log_dmu, _probit_ratios, _probit_k, False)
CLOGLOG = Family("cloglog", "cloglog", _cloglog_logp, _cloglog_log_dmu, _cloglog_ratios,
                 _cloglog_k, False)

FAMILIES: dict[str, Family] = {f.name: f for f in (LOGIT, PROBIT, CLOGLOG)}

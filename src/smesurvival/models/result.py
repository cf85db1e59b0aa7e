"""FitResult: the one results protocol every model honours (STYLE.md lesson 2).

A frozen value holding names and numpy arrays. Tables, figures, effects, the CLI and the web
app use only this protocol: ``params``, ``vcov``, ``se``, ``conf_int()``, ``tidy()``, ``nobs``,
``n_events``, ``loglik``, ``predict()``, ``diagnostics``, ``to_dict()`` / ``from_dict()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from smesurvival.data.flow import SampleFlow
from smesurvival.errors import UsageError

PredictType = Literal["response", "link"]


@dataclass(frozen=True)
class Diagnostics:
    """What a careful analyst checks after a fit, recorded rather than printed."""

    vif: dict[str, float] = field(default_factory=dict)
    min_fitted: float = math.nan
    max_fitted: float = math.nan
    n_fitted_extreme: int = 0  # fitted probabilities within 1e-8 of 0 or 1
    condition_number: float = math.nan
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "vif": self.vif, "min_fitted": self.min_fitted, "max_fitted": self.max_fitted,
            "n_fitted_extreme": self.n_fitted_extreme,
            "condition_number": self.condition_number, "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnostics:
        return cls(
            dict(d.get("vif", {})), d.get("min_fitted", math.nan), d.get("max_fitted", math.nan),
            int(d.get("n_fitted_extreme", 0)), d.get("condition_number", math.nan),
            tuple(d.get("notes", ())),
        )


#: Models whose exponentiated coefficients are ratios (odds ratio, hazard ratio, subdistribution HR).
RATIO_MODELS = ("logit", "firth", "cox", "finegray")
#: Binary-outcome models and the link their predictions use.
LINKS = {"logit": "logit", "probit": "probit", "cloglog": "cloglog", "firth": "logit"}


@dataclass(frozen=True)
class FitResult:
    """A fitted model and its inference: one protocol for every estimator.

    Binary models (logit, probit, cloglog, firth; discrete-time hazards are binary models on
    person-period rows) predict probabilities; survival models (cox, finegray) keep what they
    need to predict in ``baseline``; model-specific statistics (concordance, score test, ties,
    strata, events per cause, ...) live in ``extra`` as JSON-safe values.
    """

    model: str
    formula: str
    terms: tuple[str, ...]
    params: np.ndarray
    vcov: np.ndarray
    vcov_type: str
    nobs: int
    n_events: float
    loglik: float
    llnull: float
    converged: bool
    iterations: int
    has_intercept: bool
    flow: SampleFlow
    conf_level: float = 0.95
    information: str = "expected"
    weights_kind: str | None = None
    sum_weights: float | None = None
    n_clusters: int | None = None
    cluster_var: str | None = None
    engine: str = "memory"
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    design_spec: dict[str, Any] | None = None  # JSON-safe formulaic state, for predict()
    extra: dict[str, Any] = field(default_factory=dict)  # model-specific, JSON-safe
    baseline: dict[str, Any] | None = None  # survival models: baseline cumulative hazard
    link: str | None = None  # binary models: the link of predict(); None -> LINKS[model]
    _spec: Any = field(default=None, repr=False, compare=False)  # live formulaic ModelSpec

    # ---- coefficients -------------------------------------------------------------------
    @property
    def k(self) -> int:
        return len(self.params)

    @property
    def df_model(self) -> int:
        return self.k - (1 if self.has_intercept else 0)

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov))

    @property
    def zvalues(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.params / self.se

    @property
    def pvalues(self) -> np.ndarray:
        return 2.0 * stats.norm.sf(np.abs(self.zvalues))

    def index(self, term: str) -> int:
        """Position of a term, with a helpful error listing the model's terms."""
        try:
            return self.terms.index(term)
        except ValueError:
            raise UsageError(
                f"term '{term}' is not in the model; its terms are: {', '.join(self.terms)}"
            ) from None

    def conf_int(self, level: float | None = None) -> pd.DataFrame:
        """Wald confidence intervals (columns ``conf_low``, ``conf_high``) indexed by term."""
        lvl = self.conf_level if level is None else level
        if not 0.0 < lvl < 1.0:
            raise UsageError(f"conf_level must be between 0 and 1; got {lvl}")
        z = stats.norm.ppf(0.5 + lvl / 2.0)
        return pd.DataFrame(
            {"conf_low": self.params - z * self.se, "conf_high": self.params + z * self.se},
            index=pd.Index(self.terms, name="term"),
        )

    def tidy(self, conf_level: float | None = None, exponentiate: bool = False) -> pd.DataFrame:
        """One row per term: estimate, std_error, statistic, p_value, CI, exp_estimate (odds ratio for logit)."""
        ci = self.conf_int(conf_level)
        df = pd.DataFrame(
            {
                "term": list(self.terms),
                "estimate": self.params,
                "std_error": self.se,
                "statistic": self.zvalues,
                "p_value": self.pvalues,
                "conf_low": ci["conf_low"].to_numpy(),
                "conf_high": ci["conf_high"].to_numpy(),
            }
        )
        if self.model in RATIO_MODELS or exponentiate:
            df["exp_estimate"] = np.exp(self.params)
        return df

    # ---- fit statistics -----------------------------------------------------------------
    @property
    def n_for_ic(self) -> float:
        """Observations for BIC and Nagelkerke: summed frequency weights, else rows."""
        if self.weights_kind == "frequency" and self.sum_weights is not None:
            return float(self.sum_weights)
        return float(self.nobs)

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.k

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + math.log(self.n_for_ic) * self.k

    @property
    def deviance(self) -> float:
        return -2.0 * self.loglik

    @property
    def lr_chi2(self) -> float:
        return 2.0 * (self.loglik - self.llnull)

    @property
    def lr_df(self) -> int:
        return self.df_model

    @property
    def lr_pvalue(self) -> float:
        return float(stats.chi2.sf(self.lr_chi2, self.lr_df)) if self.lr_df > 0 else math.nan

    @property
    def pseudo_r2_mcfadden(self) -> float:
        return 1.0 - self.loglik / self.llnull if self.llnull != 0 else math.nan

    @property
    def pseudo_r2_nagelkerke(self) -> float:
        n = self.n_for_ic
        cox_snell = 1.0 - math.exp(2.0 * (self.llnull - self.loglik) / n)
        max_cs = 1.0 - math.exp(2.0 * self.llnull / n)
        return cox_snell / max_cs if max_cs > 0 else math.nan

    # ---- prediction ---------------------------------------------------------------------
    def _model_spec(self) -> Any:
        if self._spec is not None:
            return self._spec
        if self.design_spec is None:
            raise UsageError("this result carries no formula state, so it cannot predict new data")
        from smesurvival.models.design import spec_from_dict

        return spec_from_dict(self.design_spec)

    def design_matrix(self, newdata: pd.DataFrame) -> np.ndarray:
        """Encode new rows exactly as the fit did (same levels and transform state)."""
        from smesurvival.models.design import encode_new

        X, names = encode_new(self._model_spec(), newdata)
        try:
            cols = [names.index(t) for t in self.terms]
        except ValueError:
            missing = sorted(set(self.terms) - set(names))
            raise UsageError(
                f"new data do not encode to the model's terms (missing: {', '.join(missing)}): "
                "a category level or a column is missing"
            ) from None
        return X[:, cols]

    def predict(
        self, newdata: pd.DataFrame, type: PredictType = "response", se_fit: bool = False,
        conf_level: float | None = None,
    ) -> pd.DataFrame:
        """Predicted probability (or linear predictor) for new rows; with ``se_fit`` a delta-method
        SE and a CI (built on the link scale and transformed, so it stays inside [0, 1])."""
        if type not in ("response", "link"):
            raise UsageError(f"type must be 'response' or 'link'; got '{type}'")
        from smesurvival.models.families import FAMILIES

        link = self.link or LINKS.get(self.model)
        if link is None:
            raise UsageError(
                f"predict() of a {self.model} model: use the model's own prediction functions "
                "(e.g. survival curves), not type='response'"
            )
        X = self.design_matrix(newdata)
        eta = X @ self.params
        fam = FAMILIES[link]
        out = pd.DataFrame({"estimate": fam.mean(eta) if type == "response" else eta})
        if se_fit:
            lvl = self.conf_level if conf_level is None else conf_level
            z = stats.norm.ppf(0.5 + lvl / 2.0)
            se_eta = np.sqrt(np.einsum("ij,jk,ik->i", X, self.vcov, X))
            lo, hi = eta - z * se_eta, eta + z * se_eta
            if type == "response":
                out["std_error"] = fam.dmu_deta(eta) * se_eta
                out["conf_low"], out["conf_high"] = fam.mean(lo), fam.mean(hi)
            else:
                out["std_error"] = se_eta
                out["conf_low"], out["conf_high"] = lo, hi
        return out

    # ---- variants and serialisation -----------------------------------------------------
    def with_vcov(
        self, vcov: str, data: pd.DataFrame, cluster: str | None = None,
    ) -> FitResult:
        """A new result with another covariance estimator (the point estimates are unchanged).

        ``data`` is the data the model was fitted on (results hold no rows, only numbers).
        """
        if self.model in ("logit", "probit", "cloglog"):
            from smesurvival.models.fit import fit

            return fit(
                self.formula, data, model=self.model, vcov=vcov, cluster=cluster,  # type: ignore[arg-type]
                conf_level=self.conf_level, information=self.information,  # type: ignore[arg-type]
            )
        if self.model == "cox" and self.extra.get("firth"):
            raise UsageError("with_vcov() is not available for a Firth (bias-reduced) Cox fit: "
                             "its variance is the inverse penalised information")
        if self.model == "cox":
            from smesurvival.models.cox import fit_cox

            e = self.extra
            return fit_cox(
                self.formula, data, duration=e["duration"], event=e["event"], entry=e.get("entry"),
                strata=e.get("strata"), weights=e.get("weights"), ties=e["ties"],
                vcov=vcov, cluster=cluster, conf_level=self.conf_level,  # type: ignore[arg-type]
            )
        raise UsageError(
            f"with_vcov() is not available for {self.model} models: refit with the vcov option"
        )

    def with_conf_level(self, level: float) -> FitResult:
        return replace(self, conf_level=level)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (no pickle); :meth:`from_dict` loads it back, prediction included."""
        ci = self.conf_int()
        return {
            "model": self.model,
            "formula": self.formula,
            "terms": list(self.terms),
            "params": dict(zip(self.terms, map(float, self.params), strict=True)),
            "bse": dict(zip(self.terms, map(float, self.se), strict=True)),
            "pvalues": dict(zip(self.terms, map(float, self.pvalues), strict=True)),
            "conf_int": {
                t: [float(a), float(b)]
                for t, a, b in zip(self.terms, ci["conf_low"], ci["conf_high"], strict=True)
            },
            "vcov": self.vcov.tolist(),
            "vcov_type": self.vcov_type,
            "n_obs": self.nobs,
            "n_events": self.n_events,
            "loglik": self.loglik,
            "llnull": self.llnull,
            "aic": self.aic,
            "bic": self.bic,
            "lr_chi2": self.lr_chi2,
            "lr_df": self.lr_df,
            "pseudo_r2_mcfadden": self.pseudo_r2_mcfadden,
            "pseudo_r2_nagelkerke": self.pseudo_r2_nagelkerke,
            "converged": self.converged,
            "iterations": self.iterations,
            "has_intercept": self.has_intercept,
            "information": self.information,
            "conf_level": self.conf_level,
            "weights_kind": self.weights_kind,
            "sum_weights": self.sum_weights,
            "n_clusters": self.n_clusters,
            "cluster": self.cluster_var,
            "engine": self.engine,
            "dropped": self.flow.dropped_by_reason(),
            "sample_flow": self.flow.to_dict(),
            "diagnostics": self.diagnostics.to_dict(),
            "design_spec": self.design_spec,
            "extra": self.extra,
            "baseline": self.baseline,
            "link": self.link,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitResult:
        terms = tuple(d["terms"])
        return cls(
            model=d["model"], formula=d["formula"], terms=terms,
            params=np.array([d["params"][t] for t in terms], dtype=float),
            vcov=np.array(d["vcov"], dtype=float), vcov_type=d["vcov_type"],
            nobs=int(d["n_obs"]), n_events=float(d["n_events"]), loglik=float(d["loglik"]),
            llnull=float(d["llnull"]), converged=bool(d["converged"]),
            iterations=int(d["iterations"]), has_intercept=bool(d["has_intercept"]),
            flow=SampleFlow.from_dict(d["sample_flow"]), conf_level=float(d["conf_level"]),
            information=d.get("information", "expected"), weights_kind=d.get("weights_kind"),
            sum_weights=d.get("sum_weights"), n_clusters=d.get("n_clusters"),
            cluster_var=d.get("cluster"), engine=d.get("engine", "memory"),
            diagnostics=Diagnostics.from_dict(d.get("diagnostics", {})),
            design_spec=d.get("design_spec"), extra=dict(d.get("extra") or {}),
            baseline=d.get("baseline"), link=d.get("link"),
        )

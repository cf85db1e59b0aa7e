"""Immutable results of a study run: everything a report, the CLI or the web app shows.

``run_study`` builds one :class:`StudyResult`; renderers only read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smesurvival.data.flow import SampleFlow
from smesurvival.models.result import FitResult


@dataclass(frozen=True)
class Provenance:
    """Where the data came from: file (or query), SHA-256 of its bytes, and whether synthetic."""

    source: str
    sha256: str | None
    n_rows: int
    synthetic: bool
    generator: dict[str, Any] | None = None  # for synthetic data: seed, n, true parameters
    smesurvival_version: str = ""


@dataclass(frozen=True)
class Descriptives:
    """Table-1 statistics of the analysis variables (on the used sample, uncentred)."""

    variables: tuple[str, ...]
    labels: tuple[str, ...]
    n: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    min: np.ndarray
    max: np.ndarray
    corr: np.ndarray  # Pearson correlations, shape (k, k)
    corr_p: np.ndarray  # two-sided p-values of the correlations, shape (k, k)


@dataclass(frozen=True)
class LRTest:
    """Likelihood-ratio test of a step against the previous step (nested models)."""

    chi2: float
    df: int
    p_value: float


@dataclass(frozen=True)
class ModelStep:
    """One step of the hierarchical model sequence."""

    name: str  # short id, e.g. "M1"
    label: str  # e.g. "Controls only"
    formula: str
    fit: FitResult
    lr_vs_previous: LRTest | None


@dataclass(frozen=True)
class Verdict:
    """A hypothesis judged in one model step."""

    hypothesis: str  # "H1"
    statement: str
    term: str  # model term, e.g. "export_ratio:rd_intensity"
    expected_sign: str  # "+" or "-"
    test: str  # "one-sided" or "two-sided"
    alpha: float
    step: str  # name of the step it was judged in
    estimate: float
    std_error: float
    statistic: float
    p_value: float  # of the test stated in ``test``
    conf_low: float
    conf_high: float
    supported: bool
    published: str | None  # the 2012 study's finding: "supported" / "not supported" / None

    scale: str = "survival"  # "survival": + means better survival; "hazard": the sign is flipped

    @property
    def agrees_with_published(self) -> bool | None:
        if self.published is None:
            return None
        return self.supported == (self.published == "supported")


@dataclass(frozen=True)
class Prediction:
    """A predicted probability of surviving the window for one firm profile, with its CI."""

    label: str
    profile: dict[str, Any]  # measure -> value (uncentred, in the measures' own units)
    probability: float
    conf_low: float
    conf_high: float


@dataclass(frozen=True)
class Implication:
    """A plain-words contrast of two predictions, set beside what the 2012 study concluded."""

    topic: str  # e.g. "Export share"
    audience: str  # "owner-managers" / "policy makers"
    low: Prediction
    high: Prediction
    published: str  # the 2012 study's implication, in words
    text: str  # our sentence with the numbers


@dataclass(frozen=True)
class InteractionCurves:
    """Predicted survival against the focal variable at moderator levels, with CI bands."""

    focal: str
    moderator: str
    focal_grid: np.ndarray  # uncentred values of the focal variable
    moderator_labels: tuple[str, ...]  # e.g. ("low (-1 SD)", "mean", "high (+1 SD)")
    moderator_values: np.ndarray  # uncentred
    probability: np.ndarray  # (levels, grid)
    conf_low: np.ndarray
    conf_high: np.ndarray
    step: str


@dataclass(frozen=True)
class GroupSurvival:
    """Kaplan–Meier survival by group over the follow-up (e.g. exporters vs non-exporters)."""

    group_variable: str
    groups: tuple[str, ...]
    times: tuple[np.ndarray, ...]  # step times per group (years since the survey)
    survival: tuple[np.ndarray, ...]
    conf_low: tuple[np.ndarray, ...]
    conf_high: tuple[np.ndarray, ...]
    n: tuple[int, ...]
    n_events: tuple[int, ...]
    window_share_surviving: tuple[float, ...]  # share surviving the window, per group
    risk_times: np.ndarray | None = None  # years at which numbers at risk are tabulated
    at_risk: tuple[np.ndarray, ...] = ()  # per group, numbers at risk at risk_times
    logrank_chi2: float | None = None
    logrank_df: int | None = None
    logrank_p: float | None = None


@dataclass(frozen=True)
class ModelRun:
    """The hierarchical steps and verdicts under one estimator (main analysis or robustness)."""

    model: str  # "logit", "cox", "discrete", ...
    label: str  # e.g. "Cox proportional hazards (time to exit)"
    scale: str  # "log-odds of surviving the window" or "log hazard of exit"
    steps: tuple[ModelStep, ...]
    verdicts: tuple[Verdict, ...]


@dataclass(frozen=True)
class CauseSpecificFit:
    """A cause-specific Cox model: exits of one type are events, other exits censored."""

    exit_type: str
    step: str
    fit: FitResult | None  # None when the model cannot be estimated (``note`` says why)
    n_events: int = 0
    note: str = ""


@dataclass(frozen=True)
class PHCheck:
    """cox.zph-style proportional-hazards tests of one Cox step."""

    step: str
    terms: tuple[str, ...]
    chisq: np.ndarray
    p_value: np.ndarray
    global_chisq: float
    global_df: int
    global_p: float
    alpha: float
    note: str  # plain-language reading


@dataclass(frozen=True)
class IncidenceCurves:
    """Aalen–Johansen cumulative incidence of each exit type over the follow-up."""

    exit_types: tuple[str, ...]
    times: tuple[np.ndarray, ...]
    estimate: tuple[np.ndarray, ...]
    conf_low: tuple[np.ndarray, ...]
    conf_high: tuple[np.ndarray, ...]
    n_events: tuple[int, ...]
    at_window: tuple[float, ...]  # cumulative incidence at the end of the window


@dataclass(frozen=True)
class StudyResult:
    """Everything one run of a study produced; every output is rendered from it."""

    study: str  # spec name, e.g. "lee2012"
    title: str
    reference: str
    spec: Any  # the StudySpec used (frozen)
    provenance: Provenance
    flow: SampleFlow
    validation_warnings: tuple[str, ...]
    outcome: str  # outcome column, e.g. "survived"
    window_years: int
    n_events: int  # exits within the window
    centering: dict[str, float]  # variable -> mean subtracted (empty if not centred)
    descriptives: Descriptives
    steps: tuple[ModelStep, ...]
    verdicts: tuple[Verdict, ...]
    implications: tuple[Implication, ...]
    curves: InteractionCurves | None
    survival_by_group: tuple[GroupSurvival, ...]
    caveats: tuple[str, ...] = field(default_factory=tuple)
    robustness: tuple[ModelRun, ...] = ()  # the same hypotheses under hazard models
    cause_specific: tuple[CauseSpecificFit, ...] = ()
    ph_check: PHCheck | None = None
    incidence: IncidenceCurves | None = None

    @property
    def synthetic(self) -> bool:
        return self.provenance.synthetic

    def step(self, name: str) -> ModelStep:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

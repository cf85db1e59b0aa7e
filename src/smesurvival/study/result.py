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
class EffectRow:
    """One effect on the probability scale (or a mediation quantity) with its inference.

    ``conf_low``/``conf_high`` are the delta-method (Wald) interval; the ``boot_*`` fields hold
    the pairs-bootstrap SE and the percentile and BCa intervals when a bootstrap was run.
    ``at`` holds the values it was evaluated at, in the measures' own (uncentred) units.
    """

    term: str
    label: str
    estimate: float
    std_error: float
    conf_low: float
    conf_high: float
    p_value: float | None = None
    at: dict[str, float] = field(default_factory=dict)
    boot_se: float | None = None
    percentile_low: float | None = None
    percentile_high: float | None = None
    bca_low: float | None = None
    bca_high: float | None = None


@dataclass(frozen=True)
class BootstrapInfo:
    """How a bootstrap was run: replicates drawn, failed, seed and the BCa jackknife."""

    B: int
    seed: int
    n_failed: int
    jackknife: str  # "exact" | "onestep" | "none"
    kind: str = "pairs"


@dataclass(frozen=True)
class JNRegion:
    """A Johnson–Neyman result in the moderator's own units (uncentred).

    ``significant`` holds the intervals where the focal slope differs from zero (None for an
    unbounded end); the grid arrays carry the conditional slope and its pointwise band.
    """

    focal: str
    moderator: str
    scale: str  # "link" | "response"
    conf_level: float
    band: str
    bounds: tuple[float, ...]
    significant: tuple[tuple[float | None, float | None], ...]
    observed_range: tuple[float, float]
    moderator_grid: np.ndarray
    estimate: np.ndarray
    conf_low: np.ndarray
    conf_high: np.ndarray
    moderator_quantiles: np.ndarray  # percentiles 0..100 of the observed moderator (rug)
    text: str


@dataclass(frozen=True)
class ConditionalCurves:
    """Average predicted probability over a grid of the focal variable at moderator values
    (every firm set to the values), uncentred."""

    focal: str
    moderator: str
    step: str
    focal_grid: np.ndarray
    moderator_values: np.ndarray
    moderator_labels: tuple[str, ...]
    estimate: np.ndarray  # (levels, grid)
    conf_low: np.ndarray
    conf_high: np.ndarray
    conf_level: float


@dataclass(frozen=True)
class AiNortonFirms:
    """Per-firm Ai–Norton interaction effects (for the scatter): predicted probability,
    effect and z of each firm."""

    predicted: np.ndarray
    effect: np.ndarray
    z: np.ndarray
    coefficient: float | None
    link: str
    kind: str


@dataclass(frozen=True)
class InteractionEvidence:
    """One interaction on the probability scale, set beside its coefficient-based verdict."""

    hypothesis: str | None
    term: str  # the model term, e.g. "export_ratio:rd_intensity"
    focal: str
    moderator: str
    step: str
    moderator_binary: bool
    coefficient: float
    coefficient_se: float
    simple_slopes: tuple[EffectRow, ...]  # slope of the focal variable at moderator values
    slope_difference: EffectRow  # high minus low moderator value
    ai_norton: EffectRow  # the average interaction effect (Ai & Norton 2003)
    ai_norton_kind: str
    jn_link: JNRegion | None
    jn_response: JNRegion | None
    text: str
    curves: ConditionalCurves | None = None  # for the figure interaction only
    firms: AiNortonFirms | None = None  # for the figure interaction only


@dataclass(frozen=True)
class EffectsSection:
    """The focal variable's average marginal effect and each interaction on the probability scale."""

    focal: str
    step: str  # the step of the AME
    ame: EffectRow
    bootstrap: BootstrapInfo | None
    interactions: tuple[InteractionEvidence, ...]
    conf_level: float


@dataclass(frozen=True)
class MediationSection:
    """key -> mediator -> outcome: KHB rows and product-of-coefficients rows."""

    key: str
    mediator: str
    outcome: str
    controls: tuple[str, ...]
    model: str
    nobs: int
    conf_level: float
    khb: tuple[EffectRow, ...]  # empty when not requested
    product: tuple[EffectRow, ...]
    bootstrap: BootstrapInfo | None
    key_sd: float
    text: str
    published: str


@dataclass(frozen=True)
class MissingRow:
    """Missing values of one analysis variable among the rows entering the analysis sample."""

    variable: str
    label: str
    n: int
    n_missing: int
    share: float
    method: str = ""  # imputation method under MICE ("pmm", "logreg", ...); "" if none


@dataclass(frozen=True)
class PooledStep:
    """One model step fitted on each imputed data set and pooled by Rubin's rules."""

    name: str
    label: str
    formula: str
    terms: tuple[str, ...]
    estimate: np.ndarray
    std_error: np.ndarray
    df: np.ndarray  # Barnard–Rubin degrees of freedom
    p_value: np.ndarray  # two-sided, t(df)
    conf_low: np.ndarray
    conf_high: np.ndarray
    fmi: np.ndarray  # fraction of missing information
    riv: np.ndarray  # relative increase in variance
    nobs: int


@dataclass(frozen=True)
class PooledVerdict(Verdict):
    """A verdict from pooled estimates: t statistic on Barnard–Rubin df (one-sided p from t)."""

    df: float = float("inf")
    fmi: float = 0.0


@dataclass(frozen=True)
class MissingSection:
    """The missingness table, and with MICE the pooled steps and pooled verdicts."""

    method: str  # "listwise" | "mice"
    n_rows: int  # rows entering the analysis-sample stage
    n_complete: int  # rows complete in every analysis variable
    table: tuple[MissingRow, ...]
    m: int = 0
    iterations: int = 0
    seed: int | None = None
    n_imputed_rows: int = 0  # rows used by the pooled fits
    pooled_steps: tuple[PooledStep, ...] = ()
    pooled_verdicts: tuple[PooledVerdict, ...] = ()
    note: str = ""

    @property
    def any_missing(self) -> bool:
        return any(r.n_missing > 0 for r in self.table)


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
    effects: EffectsSection | None = None  # [effects]: interactions on the probability scale
    mediation: MediationSection | None = None  # [mediation]
    missing: MissingSection | None = None  # the missingness table (and MICE results)

    @property
    def synthetic(self) -> bool:
        return self.provenance.synthetic

    def step(self, name: str) -> ModelStep:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

"""The study spec: a declarative TOML file naming columns, measures, steps and hypotheses.

``load_spec("lee2012")`` loads a built-in study; ``load_spec("my.toml")`` a file. Every key is
checked: unknown keys, unknown steps and malformed hypotheses stop with a SpecError naming
the file and the key.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from smesurvival.errors import SpecError

BUILTIN = ("lee2012",)
_KINDS = ("binary", "time_to_exit", "competing")
_EXIT_TYPES = ("failure", "acquisition", "other")
_SIGNS = ("+", "-")
_TESTS = ("one-sided", "two-sided")


@dataclass(frozen=True)
class Hypothesis:
    """A directional claim about one model term, judged in one step."""

    id: str
    statement: str
    term: str
    sign: str
    step: str
    test: str
    alpha: float
    published: str | None = None


@dataclass(frozen=True)
class Step:
    """One model in the hierarchy: the controls plus ``terms`` (base step's terms + added ones)."""

    name: str
    label: str
    terms: tuple[str, ...]
    base: str | None


@dataclass(frozen=True)
class ImplicationSpec:
    """A what-if contrast of predicted survival for a typical firm, low vs high ``variable``."""

    topic: str
    audience: str
    variable: str
    low: float | str
    high: float | str
    step: str
    published: str
    at: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EffectsSpec:
    """``[effects]``: the focal variable's AME and, per moderator, the interaction on the
    probability scale (simple slopes, Ai–Norton, Johnson–Neyman)."""

    focal: str
    moderators: tuple[str, ...]
    step: str | None = None  # None: each interaction in its hypothesis's step, the AME in the last
    bootstrap: int = 1000  # replicates for the AME's bootstrap CIs; 0 = delta method only
    seed: int = 2012
    jn_grid: int = 21  # moderator values of the Johnson–Neyman curves


@dataclass(frozen=True)
class MediationSpec:
    """``[mediation]``: key -> mediator -> outcome (KHB and product of coefficients)."""

    key: str
    mediator: str
    controls: tuple[str, ...]
    method: tuple[str, ...] = ("khb", "product")
    bootstrap: int = 1000  # replicates for the indirect effect's bootstrap CIs; 0 = none
    seed: int = 2012
    published: str = ""  # what the 2012 study concluded about the key variable


@dataclass(frozen=True)
class MissingSpec:
    """``[missing]``: listwise deletion (default) or multiple imputation by chained equations."""

    method: str = "listwise"  # "listwise" | "mice"
    m: int = 20
    seed: int = 2012
    iterations: int = 10


_MISSING = ("listwise", "mice")
_MEDIATION_METHODS = ("khb", "product")


@dataclass(frozen=True)
class StudySpec:
    """A whole study, frozen. Build with :func:`load_spec` or :func:`spec_from_dict`."""

    name: str
    title: str
    reference: str
    columns: dict[str, Any]
    measures: dict[str, str]
    outcome_kind: str
    outcome: str
    window_years: int
    family: str
    vcov: str
    cluster: str | None
    weights: str | None
    conf_level: float
    center: tuple[str, ...]
    controls: tuple[str, ...]
    steps: tuple[Step, ...]
    hypotheses: tuple[Hypothesis, ...]
    interaction_figure: dict[str, str] | None
    survival_by: tuple[str, ...]
    implications: tuple[ImplicationSpec, ...]
    synthetic_n: int = 1612
    synthetic_seed: int = 2012
    source: str = "<dict>"
    data_path: str | None = None  # [data] path, resolved against the spec file's folder
    data_sql: str | None = None  # [data] sql, a DuckDB query (on data_path if it is a database)
    failure_types: tuple[str, ...] = ("failure", "acquisition", "other")  # exits that are events
    cause: str | None = None  # outcome.kind = "competing": the exit type of interest
    robustness_models: tuple[str, ...] = ()  # "cox", "discrete": the hypotheses re-judged
    cause_specific: tuple[str, ...] = ()  # exit types with their own cause-specific Cox model
    cause_specific_step: str | None = None
    ph_step: str | None = None
    ties: str = "efron"
    engine: str = "memory"  # [model] engine: memory | stream | spark (the main binary models)
    batch_rows: int | None = None  # [model] batch_rows (stream)
    memory: str = "1GB"  # [model] memory (stream budget)
    spark_master: str | None = None  # [model] spark_master (spark)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as parsed
    effects: EffectsSpec | None = None
    mediation: MediationSpec | None = None
    missing: MissingSpec = field(default_factory=MissingSpec)

    @property
    def main_model(self) -> str:
        """The estimator of the main analysis, from outcome.kind and model.family."""
        if self.outcome_kind == "binary":
            return self.family
        if self.outcome_kind == "competing":
            return "finegray"
        return self.family

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise SpecError(f"{self.source}: no step named '{name}'; steps are {', '.join(s.name for s in self.steps)}")

    def formula(self, step: Step) -> str:
        rhs = list(self.controls) + list(step.terms)
        return f"{self.outcome} ~ " + (" + ".join(rhs) if rhs else "1")

    def main_variables(self) -> tuple[str, ...]:
        """Measures entering the steps as main effects, in first-appearance order."""
        seen: dict[str, None] = {}
        for s in self.steps:
            for t in s.terms:
                for part in t.split(":"):
                    seen.setdefault(part.strip(), None)
        return tuple(seen)


def load_spec(name_or_path: str | Path) -> StudySpec:
    """Load a built-in study by name (``lee2012``) or a TOML file by path."""
    text: str
    source: str
    p = Path(name_or_path)
    if str(name_or_path) in BUILTIN:
        source = f"{name_or_path} (built-in)"
        text = resources.files("smesurvival.study").joinpath(f"{name_or_path}.toml").read_text("utf-8")
    elif p.suffix.lower() == ".toml" or p.exists():
        if not p.exists():
            raise SpecError(f"study spec file '{p}' does not exist")
        source = str(p)
        text = p.read_text("utf-8")
    else:
        raise SpecError(
            f"'{name_or_path}' is neither a built-in study ({', '.join(BUILTIN)}) nor a .toml file"
        )
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source}: not valid TOML: {e}") from None
    return spec_from_dict(raw, source)


_TOP = {"study", "data", "robustness", "effects", "mediation", "missing", "columns", "measures", "outcome", "model", "steps", "hypotheses", "tests",
        "figures", "implications", "synthetic"}


def _keys(d: Any, allowed: set[str], where: str, source: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise SpecError(f"{source}: [{where}] must be a table")
    extra = set(d) - allowed
    if extra:
        raise SpecError(
            f"{source}: unknown key(s) {', '.join(sorted(extra))} in [{where}]; allowed: "
            f"{', '.join(sorted(allowed))}"
        )
    return d


def _need(d: dict[str, Any], key: str, where: str, source: str) -> Any:
    if key not in d:
        raise SpecError(f"{source}: [{where}] needs '{key}'")
    return d[key]


def spec_from_dict(raw: dict[str, Any], source: str = "<dict>") -> StudySpec:
    """Validate a parsed TOML document and build the frozen spec."""
    _keys(raw, _TOP, "top level", source)
    st = _keys(raw.get("study", {}), {"name", "title", "reference"}, "study", source)
    out = _keys(raw.get("outcome", {}), {"kind", "variable", "window_years", "failure_types", "cause"},
                "outcome", source)
    kind = out.get("kind", "binary")
    if kind not in _KINDS:
        raise SpecError(f"{source}: outcome.kind must be one of {', '.join(_KINDS)}; got '{kind}'")
    failure_types = tuple(out.get("failure_types", ("failure", "acquisition", "other")))
    bad_types = set(failure_types) - set(_EXIT_TYPES)
    if bad_types or not failure_types:
        raise SpecError(f"{source}: outcome.failure_types must be a non-empty list of {', '.join(_EXIT_TYPES)}")
    if kind == "competing" and out.get("cause") not in _EXIT_TYPES:
        raise SpecError(f"{source}: outcome.kind = 'competing' needs outcome.cause, one of {', '.join(_EXIT_TYPES)}")
    mdl = _keys(raw.get("model", {}), {"family", "vcov", "cluster", "weights", "conf_level",
                                       "center", "controls", "engine", "batch_rows", "memory",
                                       "spark_master"}, "model", source)
    engine = str(mdl.get("engine", "memory"))
    if engine not in ("memory", "stream", "spark"):
        raise SpecError(f"{source}: model.engine must be memory, stream or spark; got '{engine}'")
    if engine != "memory" and kind != "binary":
        raise SpecError(f"{source}: model.engine '{engine}' fits the binary models (logit, probit, "
                        f"cloglog); use engine = 'memory' with outcome.kind '{kind}'")
    batch_rows = mdl.get("batch_rows")
    if batch_rows is not None:
        batch_rows = _count(mdl, "batch_rows", 0, "model", source, low=1)
    family = mdl.get("family", {"binary": "logit", "time_to_exit": "cox", "competing": "finegray"}[kind])
    allowed = {"binary": ("logit", "probit", "cloglog"), "time_to_exit": ("cox", "discrete"),
               "competing": ("finegray",)}[kind]
    if family not in allowed:
        raise SpecError(f"{source}: with outcome.kind '{kind}', model.family must be one of "
                        f"{', '.join(allowed)}; got '{family}'")
    rob = _keys(raw.get("robustness", {}), {"models", "cause_specific", "cause_specific_step",
                                             "ph_step", "ties"}, "robustness", source)
    for m in rob.get("models", []):
        if m not in ("cox", "discrete"):
            raise SpecError(f"{source}: robustness.models may hold cox and discrete; got '{m}'")
    for c in rob.get("cause_specific", []):
        if c not in _EXIT_TYPES:
            raise SpecError(f"{source}: robustness.cause_specific may hold {', '.join(_EXIT_TYPES)}; got '{c}'")
    if rob.get("ties", "efron") not in ("efron", "breslow"):
        raise SpecError(f"{source}: robustness.ties must be efron or breslow")
    tests = _keys(raw.get("tests", {}), {"kind", "alpha"}, "tests", source)
    test_kind = tests.get("kind", "one-sided")
    alpha = float(tests.get("alpha", 0.05))
    if test_kind not in _TESTS or not 0 < alpha < 1:
        raise SpecError(f"{source}: [tests] kind must be one of {_TESTS} and 0 < alpha < 1")
    steps = _parse_steps(raw.get("steps", []), source)
    names = {s.name for s in steps}
    hyps = []
    for i, h in enumerate(raw.get("hypotheses", [])):
        where = f"hypotheses #{i + 1}"
        _keys(h, {"id", "statement", "term", "sign", "step", "test", "alpha", "published"}, where, source)
        term = str(_need(h, "term", where, source))
        step = h.get("step") or next((s.name for s in steps if term in s.terms), None)
        if step is None:
            raise SpecError(f"{source}: {where} ({h.get('id')}): term '{term}' is not in any step")
        if step not in names:
            raise SpecError(f"{source}: {where} ({h.get('id')}) names step '{step}', which is not defined")
        if term not in next(s for s in steps if s.name == step).terms:
            raise SpecError(f"{source}: {where} ({h.get('id')}): term '{term}' is not in step '{step}'")
        sign = h.get("sign", "+")
        test = h.get("test", test_kind)
        if sign not in _SIGNS or test not in _TESTS:
            raise SpecError(f"{source}: {where}: sign must be + or -, test one-sided or two-sided")
        pub = h.get("published")
        if pub not in (None, "supported", "not supported"):
            raise SpecError(f"{source}: {where}: published must be 'supported' or 'not supported'")
        hyps.append(Hypothesis(str(_need(h, "id", where, source)), str(h.get("statement", "")),
                               term, sign, step, test, float(h.get("alpha", alpha)), pub))
    figs = _keys(raw.get("figures", {}), {"interaction", "survival_by"}, "figures", source)
    inter = figs.get("interaction")
    if inter is not None:
        _keys(inter, {"focal", "moderator", "step"}, "figures.interaction", source)
        if inter.get("step") not in names:
            raise SpecError(f"{source}: figures.interaction.step '{inter.get('step')}' is not a step")
    imps = []
    for i, m in enumerate(raw.get("implications", [])):
        where = f"implications #{i + 1}"
        _keys(m, {"topic", "audience", "variable", "low", "high", "step", "published", "at"}, where, source)
        stp = m.get("step", steps[-1].name if steps else "")
        if stp not in names:
            raise SpecError(f"{source}: {where} names step '{stp}', which is not defined")
        imps.append(ImplicationSpec(
            str(m.get("topic", m.get("variable"))), str(m.get("audience", "")),
            str(_need(m, "variable", where, source)), _need(m, "low", where, source),
            _need(m, "high", where, source), stp, str(m.get("published", "")),
            {str(k): float(v) for k, v in m.get("at", {}).items()},
        ))
    syn = _keys(raw.get("synthetic", {}), {"n", "seed"}, "synthetic", source)
    dat = _keys(raw.get("data", {}), {"path", "sql"}, "data", source)
    data_path = dat.get("path")
    if data_path is not None and not Path(str(data_path)).is_absolute() and Path(source).exists():
        data_path = str(Path(source).parent / str(data_path))
    window = int(out.get("window_years", 5))
    if window < 1:
        raise SpecError(f"{source}: outcome.window_years must be at least 1")
    cl = float(mdl.get("conf_level", 0.95))
    if not 0 < cl < 1:
        raise SpecError(f"{source}: model.conf_level must be between 0 and 1")
    return StudySpec(
        name=str(st.get("name", Path(source).stem)), title=str(st.get("title", "")),
        reference=str(st.get("reference", "")), columns=dict(raw.get("columns", {})),
        measures={str(k): str(v) for k, v in raw.get("measures", {}).items()},
        outcome_kind=kind, outcome=str(out.get("variable", "survived")), window_years=window,
        family=family, vcov=str(mdl.get("vcov", "classical")), cluster=mdl.get("cluster"),
        weights=mdl.get("weights"), conf_level=cl,
        center=tuple(mdl.get("center", ())), controls=tuple(mdl.get("controls", ())),
        steps=steps, hypotheses=tuple(hyps), interaction_figure=inter,
        survival_by=tuple(figs.get("survival_by", ())), implications=tuple(imps),
        synthetic_n=int(syn.get("n", 1612)), synthetic_seed=int(syn.get("seed", 2012)),
        source=source, data_path=data_path, data_sql=dat.get("sql"),
        failure_types=failure_types, cause=out.get("cause"),
        robustness_models=tuple(rob.get("models", ())),
        cause_specific=tuple(rob.get("cause_specific", ())),
        cause_specific_step=_step_name(rob.get("cause_specific_step"), names, source, "cause_specific_step"),
        ph_step=_step_name(rob.get("ph_step"), names, source, "ph_step"), ties=rob.get("ties", "efron"),
        engine=engine, batch_rows=batch_rows, memory=str(mdl.get("memory", "1GB")),
        spark_master=mdl.get("spark_master"),
        raw=copy.deepcopy(raw),
        effects=_parse_effects(raw.get("effects"), steps, source),
        mediation=_parse_mediation(raw.get("mediation"), tuple(mdl.get("controls", ())), source),
        missing=_parse_missing(raw.get("missing"), source),
    )


def _count(d: dict[str, Any], key: str, default: int, where: str, source: str, low: int = 0) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise SpecError(f"{source}: {where}.{key} must be a whole number >= {low}; got {v!r}")
    return int(v)


def _bootstrap(d: dict[str, Any], where: str, source: str) -> int:
    b = _count(d, "bootstrap", 1000, where, source)
    if b == 1:
        raise SpecError(f"{source}: {where}.bootstrap must be 0 (no bootstrap) or at least 2")
    return b


def _interaction_term(focal: str, moderator: str, terms: tuple[str, ...]) -> str | None:
    for t in (f"{focal}:{moderator}", f"{moderator}:{focal}"):
        if t in terms:
            return t
    return None


def _parse_effects(raw: Any, steps: tuple[Step, ...],
                   source: str) -> EffectsSpec | None:
    if raw is None:
        return None
    e = _keys(raw, {"focal", "moderators", "step", "bootstrap", "seed", "jn_grid"}, "effects", source)
    focal = str(_need(e, "focal", "effects", source))
    mods = e.get("moderators", [])
    if not isinstance(mods, list) or not all(isinstance(m, str) for m in mods):
        raise SpecError(f"{source}: effects.moderators must be a list of measure names")
    names = {s.name: s for s in steps}
    step = e.get("step")
    if step is not None and step not in names:
        raise SpecError(f"{source}: effects.step '{step}' is not a step; steps are {', '.join(names)}")
    chosen = [names[step]] if step is not None else list(steps)
    if not any(focal in s.terms for s in chosen):
        raise SpecError(f"{source}: effects.focal '{focal}' is not a main effect of "
                        f"{'step ' + step if step else 'any step'}")
    for m in mods:
        if m == focal:
            raise SpecError(f"{source}: effects.moderators: '{m}' is the focal variable")
        if step is not None and _interaction_term(focal, m, names[step].terms) is None:
            raise SpecError(f"{source}: effects.moderators: step '{step}' has no {focal}:{m} "
                            "interaction term")
        if step is None and not any(_interaction_term(focal, m, s.terms) for s in steps):
            raise SpecError(f"{source}: effects.moderators: no step has a {focal}:{m} interaction term")
    grid = _count(e, "jn_grid", 21, "effects", source, low=3)
    return EffectsSpec(focal, tuple(mods), None if step is None else str(step),
                       _bootstrap(e, "effects", source), _count(e, "seed", 2012, "effects", source),
                       grid)


def _parse_mediation(raw: Any, controls: tuple[str, ...], source: str) -> MediationSpec | None:
    if raw is None:
        return None
    d = _keys(raw, {"key", "mediator", "controls", "method", "bootstrap", "seed", "published"},
              "mediation", source)
    key, med = str(_need(d, "key", "mediation", source)), str(_need(d, "mediator", "mediation", source))
    if key == med:
        raise SpecError(f"{source}: mediation.key and mediation.mediator must differ")
    method = d.get("method", list(_MEDIATION_METHODS))
    method = [method] if isinstance(method, str) else method
    if not isinstance(method, list) or not method or set(method) - set(_MEDIATION_METHODS):
        raise SpecError(f"{source}: mediation.method must be a list of {', '.join(_MEDIATION_METHODS)}")
    ctr = d.get("controls", list(controls))
    if not isinstance(ctr, list) or not all(isinstance(c, str) for c in ctr):
        raise SpecError(f"{source}: mediation.controls must be a list of terms")
    return MediationSpec(key, med, tuple(ctr), tuple(dict.fromkeys(method)),
                         _bootstrap(d, "mediation", source),
                         _count(d, "seed", 2012, "mediation", source), str(d.get("published", "")))


def _parse_missing(raw: Any, source: str) -> MissingSpec:
    if raw is None:
        return MissingSpec()
    d = _keys(raw, {"method", "m", "seed", "iterations"}, "missing", source)
    method = d.get("method", "listwise")
    if method not in _MISSING:
        raise SpecError(f"{source}: missing.method must be one of {', '.join(_MISSING)}; got '{method}'")
    return MissingSpec(method, _count(d, "m", 20, "missing", source, low=2),
                       _count(d, "seed", 2012, "missing", source),
                       _count(d, "iterations", 10, "missing", source, low=1))


def _step_name(name: Any, names: set[str], source: str, key: str) -> str | None:
    if name is not None and name not in names:
        raise SpecError(f"{source}: robustness.{key} '{name}' is not a step")
    return None if name is None else str(name)


def _parse_steps(raw_steps: Any, source: str) -> tuple[Step, ...]:
    if not isinstance(raw_steps, list) or not raw_steps:
        raise SpecError(f"{source}: define at least one [[steps]] table")
    steps: dict[str, Step] = {}
    for i, s in enumerate(raw_steps):
        where = f"steps #{i + 1}"
        _keys(s, {"name", "label", "add", "base"}, where, source)
        name = str(_need(s, "name", where, source))
        if name in steps:
            raise SpecError(f"{source}: step name '{name}' is used twice")
        base = s.get("base")
        if base is not None and base not in steps:
            raise SpecError(f"{source}: step '{name}' has base '{base}', which is not an earlier step")
        terms = (steps[base].terms if base else ()) + tuple(str(t) for t in s.get("add", []))
        steps[name] = Step(name, str(s.get("label", name)), tuple(dict.fromkeys(terms)), base)
    return tuple(steps.values())

"""Study options from a form, turned into a study spec without evaluating any user text.

The reference study (``lee2012``) is the base. A form (or the JSON API) may only choose among
fixed values: which hypotheses to judge, which controls from :data:`CONTROLS` to adjust for, the
outcome window, the link of the binary model, whether to add the hazard-model robustness checks,
the bootstrap size and the missing-data method. Controls are model terms written by us, never
by the user, so no formula text from a request reaches the formula parser.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from smesurvival.errors import SpecError, UsageError
from smesurvival.study.spec import StudySpec, spec_from_dict

BASE_STUDY = "lee2012"

#: The controls a user may switch on or off: model term -> label, and the column role it needs.
CONTROLS: dict[str, tuple[str, str | None]] = {
    "log_firm_age": ("Firm age (log years)", "founding_year"),
    "log_employees": ("Firm size (log employees)", "employees"),
    "C(industry)": ("Industry dummies", "industry"),
    "C(region)": ("Region dummies", "region"),
}
FAMILIES: dict[str, str] = {"logit": "Logit", "probit": "Probit", "cloglog": "Complementary log-log"}
BOOTSTRAP: tuple[int, ...] = (0, 200, 1000)
WINDOWS: tuple[int, ...] = tuple(range(1, 11))
MISSING: dict[str, str] = {"listwise": "Listwise deletion (complete cases)",
                           "mice": "Multiple imputation (MICE, m = 20)"}


def base_raw() -> dict[str, Any]:
    """The reference study's TOML document as a dict (a fresh copy)."""
    text = resources.files("smesurvival.study").joinpath(f"{BASE_STUDY}.toml").read_text("utf-8")
    return tomllib.loads(text)


@dataclass(frozen=True)
class StudyOptions:
    """What the study form can change; every field is checked against the allowed values."""

    hypotheses: tuple[str, ...] = ()
    controls: tuple[str, ...] = ()
    window_years: int = 5
    family: str = "logit"
    robustness: bool = True
    bootstrap: int = 1000
    missing: str = "listwise"

    @classmethod
    def default(cls) -> StudyOptions:
        raw = base_raw()
        return cls(
            hypotheses=tuple(str(h["id"]) for h in raw.get("hypotheses", [])),
            controls=tuple(raw["model"]["controls"]),
            window_years=int(raw["outcome"].get("window_years", 5)),
            family=str(raw["model"].get("family", "logit")),
            robustness="robustness" in raw,
            bootstrap=int(raw.get("effects", {}).get("bootstrap", 1000)),
            missing=str(raw.get("missing", {}).get("method", "listwise")),
        )

    @classmethod
    def parse(cls, d: dict[str, Any]) -> StudyOptions:
        """Check a dict of options (from JSON or a form); unknown keys and values are refused."""
        known = {"hypotheses", "controls", "window_years", "family", "robustness", "bootstrap", "missing"}
        extra = sorted(set(d) - known)
        if extra:
            raise UsageError(f"unknown study option(s) {', '.join(map(repr, extra))}; "
                             f"the options are {', '.join(sorted(known))}")
        default = cls.default()
        hyps_allowed = default.hypotheses
        hyps = tuple(str(h) for h in d.get("hypotheses", hyps_allowed))
        bad = [h for h in hyps if h not in hyps_allowed]
        if bad:
            raise UsageError(f"unknown hypothesis {bad[0]!r}; choose among {', '.join(hyps_allowed)}")
        controls = tuple(str(c) for c in d.get("controls", default.controls))
        bad = [c for c in controls if c not in CONTROLS]
        if bad:
            raise UsageError(f"control {bad[0]!r} is not one of the allowed controls "
                             f"({', '.join(CONTROLS)}); controls are chosen, not written")
        window = _int(d.get("window_years", default.window_years), "window_years", WINDOWS)
        boot = _int(d.get("bootstrap", default.bootstrap), "bootstrap", BOOTSTRAP)
        family = str(d.get("family", default.family))
        if family not in FAMILIES:
            raise UsageError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
        missing = str(d.get("missing", default.missing))
        if missing not in MISSING:
            raise UsageError(f"missing must be one of {', '.join(MISSING)}; got {missing!r}")
        rob = d.get("robustness", default.robustness)
        if not isinstance(rob, bool):
            raise UsageError("robustness must be true or false")
        return cls(tuple(dict.fromkeys(hyps)), tuple(dict.fromkeys(controls)), window, family,
                   rob, boot, missing)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hypotheses"], d["controls"] = list(self.hypotheses), list(self.controls)
        return d


def _int(value: Any, name: str, allowed: tuple[int, ...]) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        v = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a whole number; got {value!r}") from None
    if isinstance(value, float) and value != v or v not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return v


def build_spec(options: StudyOptions, columns: dict[str, Any] | None = None,
               synthetic: dict[str, Any] | None = None) -> tuple[dict[str, Any], StudySpec]:
    """The reference study with ``options`` applied: (raw TOML-like dict, checked spec)."""
    raw = copy.deepcopy(base_raw())
    raw["hypotheses"] = [h for h in raw.get("hypotheses", []) if h["id"] in options.hypotheses]
    raw["model"]["controls"] = list(options.controls)
    raw["model"]["family"] = options.family
    raw["outcome"]["window_years"] = options.window_years
    if not options.robustness:
        raw.pop("robustness", None)
    for section in ("effects", "mediation"):
        if section in raw:
            raw[section]["bootstrap"] = options.bootstrap
    raw.setdefault("missing", {})["method"] = options.missing
    if columns is not None:
        raw["columns"] = columns
    if synthetic is not None:
        raw["synthetic"] = {"n": int(synthetic["n"]), "seed": int(synthetic["seed"])}
    raw["study"]["name"] = BASE_STUDY if options == StudyOptions.default() else f"{BASE_STUDY}-variant"
    try:
        return raw, spec_from_dict(raw, source="the study options")
    except SpecError as e:
        raise UsageError(str(e)) from None


def spec_from_raw(raw: dict[str, Any]) -> StudySpec:
    return spec_from_dict(raw, source="the study options")


def hypotheses() -> list[dict[str, str]]:
    """The base study's hypotheses (id, statement, published finding) for the form."""
    return [{"id": str(h["id"]), "statement": str(h.get("statement", "")),
             "published": str(h.get("published", ""))} for h in base_raw().get("hypotheses", [])]


def choices() -> dict[str, Any]:
    """Every allowed value of every option (the form's choices; GET /api/study/options)."""
    d = StudyOptions.default()
    return {
        "study": BASE_STUDY,
        "default": d.to_dict(),
        "hypotheses": hypotheses(),
        "controls": [{"term": t, "label": lab, "needs_role": role} for t, (lab, role) in CONTROLS.items()],
        "family": [{"value": k, "label": v} for k, v in FAMILIES.items()],
        "window_years": list(WINDOWS),
        "bootstrap": list(BOOTSTRAP),
        "missing": [{"value": k, "label": v} for k, v in MISSING.items()],
    }

"""Studies: the spec, the built-in reference study and ``run_study``."""

from smesurvival.study.result import StudyResult, Verdict
from smesurvival.study.run import run_study
from smesurvival.study.spec import StudySpec, load_spec

__all__ = ["StudyResult", "StudySpec", "Verdict", "load_spec", "run_study"]

"""One exception family for smesurvival: every error a user can cause derives from SmeSurvivalError.

The CLI turns any ``SmeSurvivalError`` into a one-paragraph message and exit status 2;
anything else is a bug (exit status 1).
"""

from __future__ import annotations


class SmeSurvivalError(Exception):
    """Base class of every error caused by input, options or data (CLI exit status 2)."""


class UsageError(SmeSurvivalError):
    """An option or argument is not one of the accepted values."""


class DataReadError(SmeSurvivalError):
    """A data source could not be read (missing file, unknown format, bad SQL)."""


class FileTooLargeError(DataReadError):
    """A file is larger than the in-memory readers accept (``SMESURVIVAL_MAX_FILE_SIZE``)."""


class DataValidationError(SmeSurvivalError):
    """The data break one or more validation rules; ``report`` holds every violation."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class SpecError(SmeSurvivalError):
    """A study spec (TOML) is malformed or names unknown columns, measures or terms."""


class FormulaError(SmeSurvivalError):
    """A model formula is malformed, uses a forbidden expression, or names unknown columns."""


class EstimationError(SmeSurvivalError):
    """A model cannot be estimated on these data (base of the estimation errors)."""


class ConvergenceError(EstimationError):
    """The estimator did not converge within its iteration limit."""


class SeparationError(EstimationError):
    """Perfect or quasi-complete separation: the maximum-likelihood estimate does not exist."""


class RankDeficientError(EstimationError):
    """The design matrix has linearly dependent columns."""


class SmeSurvivalWarning(UserWarning):
    """Base class of smesurvival's warnings."""


class SeparationWarning(SmeSurvivalWarning):
    """Some fitted probabilities are numerically 0 or 1."""


class SyntheticDataWarning(SmeSurvivalWarning):
    """Results come from the synthetic cohort, not from real firms."""

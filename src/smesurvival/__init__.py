"""smesurvival: the statistics of small-business survival, from firm data to tested answers.

Quick start::

    import smesurvival as sm
    result = sm.run_study("lee2012")          # the reference study on the built-in cohort
    fit = sm.fit("survived ~ export_ratio * rd_intensity + C(industry)", data, model="logit")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "fit": ("smesurvival.models.fit", "fit"),
    "FitResult": ("smesurvival.models.result", "FitResult"),
    "run_study": ("smesurvival.study.run", "run_study"),
    "load_spec": ("smesurvival.study.spec", "load_spec"),
    "simulate_cohort": ("smesurvival.data.synthetic", "simulate_cohort"),
    "read_data": ("smesurvival.data.readers", "read_data"),
    "write_report": ("smesurvival.report.build", "write_report"),
    "kaplan_meier": ("smesurvival.models.km", "kaplan_meier"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the public API lazily so ``import smesurvival`` stays fast."""
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'smesurvival' has no attribute '{name}'")

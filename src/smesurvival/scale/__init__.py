"""Engines for data that do not fit in memory (DESIGN.md principle 1: one kernel, many engines).

``fit_stream`` runs the in-memory estimators' partial-sum kernels over Arrow record batches
read from Parquet, CSV, DuckDB queries or iterators, in bounded memory; ``fit_cox_stream`` does
the same for Cox models (two passes per Newton step). ``fit_spark`` and
``fit_spark_discrete`` run the same kernels per Spark partition (the ``spark`` extra:
``pip install 'smesurvival[spark]'``); they are imported on first use.
"""

from typing import Any

from smesurvival.scale.stream import fit_stream, parse_memory, rows_for_memory
from smesurvival.scale.stream_cox import fit_cox_stream

__all__ = ["fit_cox_stream", "fit_spark", "fit_spark_discrete", "fit_stream", "parse_memory",
           "rows_for_memory", "spark_session"]

_SPARK = ("fit_spark", "fit_spark_discrete", "spark_session")


def __getattr__(name: str) -> Any:
    if name in _SPARK:
        from smesurvival.scale import spark, spark_discrete

        return getattr(spark_discrete if name == "fit_spark_discrete" else spark, name)
    raise AttributeError(f"module 'smesurvival.scale' has no attribute '{name}'")

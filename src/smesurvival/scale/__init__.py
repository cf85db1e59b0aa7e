"""Engines for data that do not fit in memory (DESIGN.md principle 1: one kernel, many engines).

``fit_stream`` runs the in-memory estimators' partial-sum kernels over Arrow record batches
read from Parquet, CSV, DuckDB queries or iterators, in bounded memory.
"""

from smesurvival.scale.stream import fit_stream, parse_memory, rows_for_memory

__all__ = ["fit_stream", "parse_memory", "rows_for_memory"]

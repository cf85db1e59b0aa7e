"""Read firm data from files or DuckDB SQL into pandas, with provenance (path, format, SHA-256).

Every failure becomes a :class:`DataReadError` that names the file and says what to do.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from smesurvival.errors import DataReadError

__all__ = ["FORMATS", "LoadedData", "SourceInfo", "file_sha256", "read_data", "read_sql"]

#: File extension -> format name.
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".dta": "stata",
    ".sav": "spss",
    ".duckdb": "duckdb",
    ".db": "duckdb",
}


@dataclass(frozen=True)
class SourceInfo:
    """Where data came from: path (or query), format, SHA-256 of the file bytes, and its shape."""

    path: str
    format: str
    sha256: str | None
    n_rows: int
    n_columns: int


@dataclass(frozen=True)
class LoadedData:
    """A data frame read from a source, with its provenance."""

    frame: pd.DataFrame
    source: SourceInfo


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes, read in chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def read_data(
    source: str | Path, *, sql: str | None = None, sheet: str | int | None = None
) -> LoadedData:
    """Read a data file (format chosen by extension) into a :class:`LoadedData`.

    CSV/TXT/TSV, Parquet, Excel (``sheet``: name or 0-based index, default the first),
    Stata ``.dta``, SPSS ``.sav``, and DuckDB databases (``.duckdb``/``.db``, with ``sql``; a
    database holding a single table may omit it).
    """
    path = Path(source).expanduser()
    ext = path.suffix.lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        accepted = ", ".join(sorted(FORMATS))
        raise DataReadError(
            f"cannot read {path}: unknown file extension {ext or '(none)'!r}. Accepted extensions "
            f"are {accepted}; for other sources use read_sql() with a DuckDB query."
        )
    if not path.exists():
        raise DataReadError(f"cannot read {path}: no such file. Check the path and spelling.")
    if path.is_dir():
        raise DataReadError(f"cannot read {path}: it is a directory, not a data file.")
    if path.stat().st_size == 0:
        raise DataReadError(f"cannot read {path}: the file is empty (0 bytes).")
    if sql is not None and fmt != "duckdb":
        raise DataReadError(
            f"cannot read {path}: sql= applies only to DuckDB databases (.duckdb, .db); "
            "to query a file, use read_sql(\"SELECT * FROM 'file.parquet'\")."
        )
    if sheet is not None and fmt != "excel":
        raise DataReadError(f"cannot read {path}: sheet= applies only to Excel files (.xlsx).")

    readers: dict[str, Callable[[], pd.DataFrame]] = {
        "csv": lambda: _read_csv(path),
        "parquet": lambda: _read_parquet(path),
        "excel": lambda: _read_excel(path, sheet),
        "stata": lambda: _read_stata(path),
        "spss": lambda: _read_spss(path),
        "duckdb": lambda: _read_duckdb_file(path, sql),
    }
    try:
        frame = readers[fmt]()
    except DataReadError:
        raise
    except Exception as exc:  # any parser failure is a bad file, not a bug
        raise DataReadError(
            f"cannot read {path} as {fmt.upper()}: {_short(exc)}. Check that the file is a valid "
            f"{fmt.upper()} file (re-export it, or use another format)."
        ) from exc
    frame = _finish(frame, str(path))
    info = SourceInfo(str(path), fmt, file_sha256(path), len(frame), frame.shape[1])
    return LoadedData(frame, info)


def read_sql(query: str, database: str | Path | None = None) -> LoadedData:
    """Run a DuckDB query (e.g. ``SELECT * FROM 'firms.parquet'``) and return its result.

    ``database`` is a DuckDB file opened read-only; without it the query runs in memory.
    """
    import duckdb

    if not isinstance(query, str) or not query.strip():
        raise DataReadError("read_sql needs a non-empty SQL query, e.g. SELECT * FROM 'firms.parquet'.")
    where = "<duckdb query>"
    sha = None
    if database is not None:
        db = Path(database).expanduser()
        if not db.is_file():
            raise DataReadError(f"cannot open DuckDB database {db}: no such file.")
        where, sha = str(db), file_sha256(db)
    try:
        con = duckdb.connect(where if database is not None else ":memory:", read_only=database is not None)
    except Exception as exc:
        raise DataReadError(f"cannot open {where} as a DuckDB database: {_short(exc)}.") from exc
    try:
        frame = con.execute(query).df()
    except Exception as exc:
        raise DataReadError(
            f"the SQL query failed on {where}: {_short(exc)}. Query: {_clip(query)}"
        ) from exc
    finally:
        con.close()
    label = where if database is not None else f"SQL: {_clip(query)}"
    frame = _finish(frame, label)
    return LoadedData(frame, SourceInfo(label, "sql", sha, len(frame), frame.shape[1]))


# ---------------------------------------------------------------- format readers


def _read_csv(path: Path) -> pd.DataFrame:
    """CSV via pyarrow (fast, multi-threaded); text stays text, empty cells are missing."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    delimiter = sniff_delimiter(path)
    convert = pacsv.ConvertOptions(strings_can_be_null=True)
    parse = pacsv.ParseOptions(delimiter=delimiter)
    try:
        table = pacsv.read_csv(path, parse_options=parse, convert_options=convert)
        not_utf8 = any(pa.types.is_binary(t) for t in table.schema.types)
    except pa.ArrowInvalid as exc:
        if "utf8" not in str(exc).lower():
            raise
        not_utf8 = True
    if not_utf8:  # text that is not UTF-8: legacy exports are usually Windows-1252 / Latin-1
        read = pacsv.ReadOptions(encoding="cp1252")
        table = pacsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    _check_duplicates(table.column_names, path)
    return table.to_pandas()


def sniff_delimiter(path: Path) -> str:
    """The most frequent of , ; tab | in the header line (comma when none)."""
    with open(path, "rb") as fh:
        head = fh.readline(1 << 16).decode("utf-8", errors="replace")
    counts = {d: head.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    _check_duplicates(table.column_names, path)
    return table.to_pandas()


def _read_excel(path: Path, sheet: str | int | None) -> pd.DataFrame:
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        names = wb.sheetnames
        if isinstance(sheet, str) and sheet not in names:
            raise DataReadError(
                f"cannot read {path}: no sheet named {sheet!r}; its sheets are {', '.join(names)}."
            )
        if isinstance(sheet, int) and not 0 <= sheet < len(names):
            raise DataReadError(
                f"cannot read {path}: sheet index {sheet} out of range; it has {len(names)} "
                f"sheet(s) ({', '.join(names)}), counted from 0."
            )
        ws = wb[names[sheet] if isinstance(sheet, int) else (sheet or names[0])]
        header = next(ws.iter_rows(max_row=1, values_only=True), ())
    finally:
        wb.close()
    _check_duplicates([str(h) for h in header if h is not None], path)
    return pd.read_excel(path, sheet_name=0 if sheet is None else sheet, engine="openpyxl")


def _read_stata(path: Path) -> pd.DataFrame:
    """Stata: value-labelled columns come back as their labels (text)."""
    frame = pd.read_stata(path, convert_categoricals=True, convert_missing=False)
    return _labels_to_text(frame)


def _read_spss(path: Path) -> pd.DataFrame:
    """SPSS: value labels applied (labelled codes become text; plain numbers stay numbers)."""
    import pyreadstat

    frame, _meta = pyreadstat.read_sav(str(path), apply_value_formats=True, formats_as_category=True)
    return _labels_to_text(frame)


def _read_duckdb_file(path: Path, sql: str | None) -> pd.DataFrame:
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
    except Exception as exc:
        raise DataReadError(
            f"cannot open {path} as a DuckDB database: {_short(exc)}. (SQLite files are not "
            "DuckDB files: export the table to CSV or Parquet.)"
        ) from exc
    try:
        if sql is None:
            tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
            if len(tables) != 1:
                listing = ", ".join(tables) if tables else "none"
                raise DataReadError(
                    f"cannot read {path}: a DuckDB database needs sql= (e.g. sql=\"SELECT * FROM "
                    f"firms\"); its tables are: {listing}."
                )
            sql = f'SELECT * FROM "{tables[0]}"'
        try:
            return con.execute(sql).df()
        except Exception as exc:
            raise DataReadError(
                f"the SQL query failed on {path}: {_short(exc)}. Query: {_clip(sql)}"
            ) from exc
    finally:
        con.close()


# ---------------------------------------------------------------- helpers


def _labels_to_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical (value-labelled) columns -> text; mixed label/number objects -> text too."""
    out = {}
    for col in frame.columns:
        s = frame[col]
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object:
            s = s.map(_label_text, na_action="ignore").astype("str")
        out[col] = s
    return pd.DataFrame(out, index=frame.index)


def _label_text(v: object) -> str:
    """A label or code as text (``3.0`` -> ``"3"``)."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _check_duplicates(names: list[str], path: Path | str) -> None:
    dups = sorted(n for n, k in Counter(str(x).strip() for x in names).items() if k > 1)
    if dups:
        raise DataReadError(
            f"cannot read {path}: duplicate column name(s) {', '.join(map(repr, dups))}. "
            "Each column needs a unique name: rename or delete the duplicates."
        )


def _finish(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """Common clean-up: text column names without surrounding spaces, a fresh RangeIndex."""
    if frame.shape[1] == 0:
        raise DataReadError(f"cannot read {label}: no columns found (is it empty?).")
    names = [str(c).strip() for c in frame.columns]
    _check_duplicates(names, label)
    if len(frame) == 0:
        raise DataReadError(
            f"{label} has column names ({', '.join(names[:10])}) but no data rows."
        )
    frame = frame.set_axis(names, axis=1)
    return frame.reset_index(drop=True)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _clip(query: str) -> str:
    q = " ".join(query.split())
    return q if len(q) <= 200 else q[:197] + "..."

"""Read firm data from files or DuckDB SQL into pandas, with provenance (path, format, SHA-256).

Every failure becomes a :class:`DataReadError` that names the file and says what to do.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from smesurvival.errors import DataReadError, FileTooLargeError

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "FORMATS",
    "LoadedData",
    "SourceInfo",
    "file_sha256",
    "legacy_encoding",
    "max_file_size",
    "read_data",
    "read_sql",
    "sniff_delimiter",
    "text_encoding",
]

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
#: Extensions we do not read, with what to do instead.
_UNSUPPORTED: dict[str, str] = {
    ".xls": "the old Excel 97-2003 format (.xls) is not read: open it in Excel or LibreOffice and "
    "save it as .xlsx (or CSV)",
    ".ods": "OpenDocument spreadsheets (.ods) are not read: save the sheet as .xlsx (or CSV)",
    ".sas7bdat": "SAS files are not read: export the data set to CSV, Stata .dta or Parquet",
    ".json": "JSON is not read: export the table to CSV or Parquet",
}

#: Largest file :func:`read_data` reads into memory unless ``SMESURVIVAL_MAX_FILE_SIZE`` (or
#: ``max_size=``) says otherwise. Reading a CSV needs about three times its size in memory.
DEFAULT_MAX_FILE_SIZE = 10**9
_SIZE_ENV = "SMESURVIVAL_MAX_FILE_SIZE"


@dataclass(frozen=True)
class SourceInfo:
    """Where data came from: path (or query), format, SHA-256 of the file bytes, its shape, and
    the text encoding a CSV was read with (``None`` for other formats)."""

    path: str
    format: str
    sha256: str | None
    n_rows: int
    n_columns: int
    encoding: str | None = None


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
    source: str | Path,
    *,
    sql: str | None = None,
    sheet: str | int | None = None,
    encoding: str | None = None,
    max_size: int | None = None,
) -> LoadedData:
    """Read a data file (format chosen by extension) into a :class:`LoadedData`.

    CSV/TXT/TSV, Parquet, Excel (``sheet``: name or 0-based index, default the first),
    Stata ``.dta``, SPSS ``.sav``, and DuckDB databases (``.duckdb``/``.db``, with ``sql``; a
    database holding a single table may omit it).

    Text files: the delimiter (``,`` ``;`` tab ``|``) is taken from the header line, and the
    encoding is detected (UTF-8 with or without a byte-order mark, UTF-16 with one, Korean
    CP949/EUC-KR, else Windows-1252/Latin-1) unless ``encoding`` names it.

    Files larger than ``max_size`` bytes (default :func:`max_file_size`: 1 GB, or the
    ``SMESURVIVAL_MAX_FILE_SIZE`` environment variable) are refused with
    :class:`FileTooLargeError` before anything is read; DuckDB databases are exempt (the
    query decides how much is read).
    """
    path = Path(source).expanduser()
    ext = path.suffix.lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        accepted = ", ".join(sorted(FORMATS))
        hint = f" ({_UNSUPPORTED[ext]})" if ext in _UNSUPPORTED else ""
        raise DataReadError(
            f"cannot read {path}: unknown file extension {ext or '(none)'!r}{hint}. Accepted "
            f"extensions are {accepted}; for other sources use read_sql() with a DuckDB query."
        )
    if not path.exists():
        raise DataReadError(f"cannot read {path}: no such file. Check the path and spelling.")
    if path.is_dir():
        raise DataReadError(f"cannot read {path}: it is a directory, not a data file.")
    size = path.stat().st_size
    if size == 0:
        raise DataReadError(f"cannot read {path}: the file is empty (0 bytes).")
    limit = max_file_size() if max_size is None else max_size
    if fmt != "duckdb" and limit > 0 and size > limit:
        raise FileTooLargeError(_too_large(path, size, limit))
    if encoding is not None and fmt != "csv":
        raise DataReadError(f"cannot read {path}: encoding= applies only to text files (.csv, .txt, .tsv).")
    if sql is not None and fmt != "duckdb":
        raise DataReadError(
            f"cannot read {path}: sql= applies only to DuckDB databases (.duckdb, .db); "
            "to query a file, use read_sql(\"SELECT * FROM 'file.parquet'\")."
        )
    if sheet is not None and fmt != "excel":
        raise DataReadError(f"cannot read {path}: sheet= applies only to Excel files (.xlsx).")

    used: list[str] = []
    readers: dict[str, Callable[[], pd.DataFrame]] = {
        "csv": lambda: _read_csv(path, encoding, used),
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
    info = SourceInfo(str(path), fmt, file_sha256(path), len(frame), frame.shape[1],
                      used[0] if used else None)
    return LoadedData(frame, info)


def max_file_size() -> int:
    """The size limit of :func:`read_data` in bytes: ``SMESURVIVAL_MAX_FILE_SIZE`` (``2GB``,
    ``500MB``, a number of bytes, or ``0``/``none`` for no limit), else 1 GB."""
    raw = os.environ.get(_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_FILE_SIZE
    if raw.lower() in ("0", "none", "off", "unlimited"):
        return 0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", raw.lower())
    if m is None:
        raise DataReadError(
            f"{_SIZE_ENV}={raw!r} is not a size; write it like 2GB, 500MB or 1500000000 "
            "(bytes), or 0 for no limit."
        )
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}[m.group(2)]
    return int(float(m.group(1)) * scale)


def _too_large(path: Path, size: int, limit: int) -> str:
    return (
        f"cannot read {path}: the file is {_human(size)}, above the {_human(limit)} that "
        f"smesurvival reads into memory (a CSV needs about three times its size in memory). "
        "For a file this large: fit with --engine stream or --engine spark, which read it in "
        "batches; or convert it to Parquet and select the rows or columns you need (read_sql); "
        f"or, if this machine has the memory, raise the limit with {_SIZE_ENV}="
        f"{-(-size // 10**9)}GB (0 for no limit)."
    )


def _human(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


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


def _read_csv(path: Path, encoding: str | None, used: list[str]) -> pd.DataFrame:
    """CSV via pyarrow (fast, multi-threaded); text stays text, empty cells are missing.

    The encoding is detected (see :func:`text_encoding`) unless given; the one used is
    appended to ``used``.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    enc = encoding if encoding is not None else text_encoding(path)
    delimiter = sniff_delimiter(path, enc)
    convert = pacsv.ConvertOptions(strings_can_be_null=True)
    parse = pacsv.ParseOptions(delimiter=delimiter)

    def read(codec: str) -> pa.Table:
        opts = pacsv.ReadOptions(encoding=_arrow_codec(codec))
        try:
            return pacsv.read_csv(path, read_options=opts, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as exc:
            if "columns, got" in str(exc):
                raise DataReadError(_field_count_message(path, codec, delimiter, exc)) from exc
            raise
        except UnicodeDecodeError as exc:
            raise DataReadError(
                f"cannot read {path}: its text is not valid {codec} (byte {exc.start} of a block "
                f"cannot be decoded). Save the file as UTF-8 (CSV UTF-8 in Excel)."
            ) from exc

    table: pa.Table | None = None
    if enc.replace("-", "").lower() in ("utf8", "utf8sig") and encoding is None:
        try:
            table = read("utf-8")
        except pa.ArrowInvalid as exc:
            if "utf8" not in str(exc).lower():
                raise
        if table is not None and any(pa.types.is_binary(t) for t in table.schema.types):
            table = None  # some text is not UTF-8
        if table is None:  # legacy exports: Korean CP949 or Windows-1252 / Latin-1
            enc = legacy_encoding(path)
    if table is None:
        try:
            table = read(enc)
        except DataReadError:
            if encoding is not None or enc != "cp1252":
                raise
            enc = "latin-1"  # bytes Windows-1252 leaves undefined: Latin-1 decodes every byte
            table = read(enc)
    used.append(enc)
    if table.num_columns == 0 or (table.num_columns == 1 and table.num_rows == 0
                                  and not str(table.column_names[0]).strip()):
        raise DataReadError(f"cannot read {path}: the file holds no data (only blank lines).")
    _check_duplicates(table.column_names, path)
    return table.to_pandas()


def sniff_delimiter(path: Path, encoding: str | None = None) -> str:
    """The most frequent of , ; tab | in the header line (comma when none)."""
    enc = encoding or text_encoding(path)
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    text = head.decode(_python_codec(enc), errors="replace").lstrip("\ufeff")
    first = text.splitlines()[0] if text.strip() else ""
    counts = {d: first.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


#: First bytes of file formats that are not text, and what to do with such a file.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive, as an Excel workbook is: if it is one, give it the .xlsx "
     "extension"),
    (bytes.fromhex("d0cf11e0a1b11ae1"), "an old-style Office file (Excel 97-2003 .xls): open it in "
     "Excel or LibreOffice and save it as .xlsx or CSV"),
    (b"PAR1", "a Parquet file: give it the .parquet extension"),
    (b"SQLite format 3", "an SQLite database: export the table to CSV or Parquet"),
    (b"%PDF", "a PDF document, not a data table"),
)


def text_encoding(path: Path) -> str:
    """The encoding a text file declares by its byte-order mark, else ``"utf-8"``.

    UTF-16 (Excel's "Unicode Text") is recognised by its byte-order mark. Files that are not
    text (a workbook, a Parquet file, other binary data) raise :class:`DataReadError` saying
    what the file looks like. Whether UTF-8 text is really UTF-8 is found out when reading it
    (then :func:`legacy_encoding` decides between Korean CP949 and Windows-1252).
    """
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            raise DataReadError(f"cannot read {path} as text (CSV): the file is {what}.")
    if b"\x00" in head:
        raise DataReadError(
            f"cannot read {path} as text (CSV): it holds binary data (NUL bytes). If it is UTF-16 "
            "text without a byte-order mark, save it as UTF-8 (CSV UTF-8 in Excel)."
        )
    return "utf-8"


def legacy_encoding(path: Path, limit: int = 16 << 20) -> str:
    """``"cp949"`` for Korean text (CP949/EUC-KR), else ``"cp1252"`` (Windows-1252 / Latin-1).

    Looks at the first ``limit`` bytes. In Korean text the bytes above 127 come in pairs that
    decode as CP949, nearly all as common Hangul (KS X 1001: both bytes 0xA1 or more). Latin-1
    text rarely decodes as CP949 at all, and when it does (a capital A-grave before a letter)
    it gives rare, extended syllables, so such a file stays Windows-1252.
    """
    with open(path, "rb") as fh:
        data = fh.read(limit)
    try:
        text = data.decode("cp949")
    except UnicodeDecodeError as exc:
        if exc.start < len(data) - 1:  # not just a character cut at the end of the sample
            return "cp1252"
        text = data[: exc.start].decode("cp949")
    wide = [c for c in text if ord(c) > 127]
    if not wide:
        return "cp1252"
    common = sum(1 for c in wide if "\uac00" <= c <= "\ud7a3" and c.encode("cp949")[1] >= 0xA1)
    return "cp949" if common >= 0.9 * len(wide) else "cp1252"


def _python_codec(enc: str) -> str:
    return "utf-8" if enc.lower().replace("-", "").replace("_", "") == "utf8sig" else enc


def _arrow_codec(enc: str) -> str:
    """Arrow reads UTF-8 natively (skipping a UTF-8 BOM); other codecs go through Python's."""
    e = enc.lower().replace("-", "").replace("_", "")
    return "utf8" if e in ("utf8", "utf8sig") else enc


def _field_count_message(path: Path, encoding: str, delimiter: str, exc: Exception) -> str:
    """Name the first file line whose number of fields differs from the header's, and why."""
    import csv

    names = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}
    one = {",": "a comma", ";": "a semicolon", "\t": "a tab", "|": "a vertical bar"}
    where, n_head, n_line, text = None, None, None, ""
    with open(path, encoding=_python_codec(encoding), errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        for rec in reader:
            if not rec or (len(rec) == 1 and not rec[0].strip()):
                continue
            if n_head is None:
                n_head = len(rec)
                continue
            if len(rec) != n_head:
                where, n_line, text = reader.line_num, len(rec), delimiter.join(rec)
                break
    if where is None or n_head is None or n_line is None:
        return (f"cannot read {path} as CSV: {_short(exc)}. Some row has more or fewer fields than "
                "the header: check the delimiters and quotes.")
    head = (f"cannot read {path}: file line {where} has {n_line} field(s) but the header (line 1) "
            f"has {n_head}, with {names[delimiter]} between fields")
    others = {d: text.count(d) for d in names if d != delimiter}
    other = max(others, key=lambda d: others[d])
    if n_line < n_head and others[other] >= n_head - 1:
        why = (f"; that line has {names[other]} between its fields instead, so the file mixes "
               "delimiters: re-export it with one delimiter throughout")
    elif n_line > n_head:
        why = (f"; a value that contains {one[delimiter]} must be put in double quotes "
               f'(e.g. "food, beverages"), or the line has cells beyond the named columns')
    else:
        why = "; the line has cells missing: check it and the line before it (a stray quote?)"
    return f"{head}{why}. The line starts: {_clip(text)}"


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    _check_duplicates(table.column_names, path)
    return table.to_pandas()


def _read_excel(path: Path, sheet: str | int | None) -> pd.DataFrame:
    import openpyxl

    with open(path, "rb") as fh:
        magic = fh.read(8)
    if not magic.startswith(b"PK\x03\x04"):
        what = ("an old-style Excel 97-2003 (.xls) file: save it as .xlsx"
                if magic == bytes.fromhex("d0cf11e0a1b11ae1") else
                "not a workbook (an .xlsx file is a zip archive); if it is text, give it the .csv "
                "extension")
        raise DataReadError(f"cannot read {path} as EXCEL: the file is {what}.")
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
        name = names[sheet] if isinstance(sheet, int) else (sheet or names[0])
        ws = wb[name]
        header = next(ws.iter_rows(max_row=1, values_only=True), ())
    finally:
        wb.close()
    _check_duplicates([str(h).strip() for h in header if h is not None and str(h).strip()], path)
    frame = pd.read_excel(path, sheet_name=name, engine="openpyxl")
    return _excel_header(frame, header, path, name)


def _excel_header(frame: pd.DataFrame, header: tuple[object, ...], path: Path, sheet: str) -> pd.DataFrame:
    """Drop columns without a name and without data; stop at a named-less column with data.

    A column with data but an empty cell in row 1 means the header is not one row of names:
    a title row or a merged group header sits above it (merged cells keep their text in the
    first cell only).
    """
    from openpyxl.utils import get_column_letter

    def empty(v: object) -> bool:
        return v is None or (isinstance(v, str) and not v.strip())

    unnamed = [j for j in range(frame.shape[1]) if j >= len(header) or empty(header[j])]
    with_data = [j for j in unnamed if frame.iloc[:, j].notna().any()]
    if not with_data:
        return frame.drop(columns=frame.columns[unnamed]) if unnamed else frame
    cells = [f"{get_column_letter(j + 1)}1" for j in with_data]
    shown = ", ".join(cells[:8]) + (f" and {len(cells) - 8} more" if len(cells) > 8 else "")
    hint = ""
    for i in range(min(len(frame), 3)):
        row = frame.iloc[i]
        texts = [str(v).strip() for v in row if isinstance(v, str) and v.strip()]
        if len(texts) >= 0.8 * frame.shape[1]:
            preview = ", ".join(repr(t) for t in texts[:4])
            hint = (f" Row {i + 2} looks like the row of column names ({preview}, ...): delete the "
                    f"row(s) above it.")
            break
    raise DataReadError(
        f"cannot read {path}: row 1 of sheet {sheet!r} must hold one column name per column, but "
        f"cell(s) {shown} are empty although their columns hold data: a title row, or a two-row "
        f"header with merged cells, sits above the data.{hint} Keep a single header row of unique "
        "names in row 1, with no merged cells, then read the file again."
    )


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
        spaced = any(str(x) != str(x).strip() for x in names if str(x).strip() in dups)
        note = " (names are compared without their surrounding spaces)" if spaced else ""
        raise DataReadError(
            f"cannot read {path}: duplicate column name(s) {', '.join(map(repr, dups))}{note}. "
            "Each column needs a unique name: rename or delete the duplicates."
        )


def _finish(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """Common clean-up: text column names without surrounding spaces, a fresh RangeIndex."""
    if frame.shape[1] == 0:
        raise DataReadError(f"cannot read {label}: it holds no data (no columns; an empty sheet?).")
    names = [str(c).strip() for c in frame.columns]
    _check_duplicates(names, label)
    if len(frame) == 0:
        raise DataReadError(
            f"{label} has column names ({', '.join(names[:10])}) but no data rows."
        )
    frame = frame.set_axis(names, axis=1)
    return frame.reset_index(drop=True)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _clip(query: str) -> str:
    q = " ".join(query.split())
    return q if len(q) <= 200 else q[:197] + "..."

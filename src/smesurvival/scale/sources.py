"""Batch sources for the streaming engine: Parquet, CSV, DuckDB queries, frames and iterators.

A source yields pandas frames of at most ``batch_rows`` rows holding only the columns asked
for, one pass at a time, as often as the engine asks (one pass per Newton iteration). Column
dtypes are made the same in every batch and the same as the in-memory readers of
:mod:`smesurvival.data.readers` give for the whole file: the first pass records each column's
Arrow type and whether it holds nulls anywhere (:meth:`BatchSource.observe`), and
:meth:`BatchSource.freeze` turns that into one pandas dtype per column (an integer column with
a null in some late batch is float64 in every batch, as it is in the whole-file frame).

Held in memory: one Arrow batch and its pandas copy; nothing proportional to the data.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa

from smesurvival.data.readers import _clip, _short
from smesurvival.errors import DataReadError, DataValidationError, UsageError

__all__ = ["BatchSource", "open_source"]

Chunk: TypeAlias = pd.DataFrame | pa.RecordBatch | pa.Table


class BatchSource:
    """Base: a re-readable stream of record batches with stable column dtypes."""

    label: str = "<stream>"
    columns: tuple[str, ...] = ()
    #: pandas nullable dtypes for integer/boolean columns with nulls (DuckDB's ``.df()``)
    nullable: bool = False

    def __init__(self) -> None:
        self._types: dict[str, pa.DataType] = {}
        self._nulls: dict[str, bool] = {}
        self._plan: dict[str, tuple[pa.DataType, Any]] | None = None

    # ---- to be provided by subclasses -----------------------------------------------------
    def _arrow_batches(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def close(self) -> None:
        """Release temporary files and connections."""

    # ---- shared -------------------------------------------------------------------------
    def frames(self, columns: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
        """One pass: pandas frames of at most ``batch_rows`` rows with ``columns``."""
        for rb in _rebatch(self._arrow_batches(columns, batch_rows), batch_rows):
            rb = _decode_dictionaries(rb)
            if self._plan is None:
                self.observe(rb)
                yield rb.to_pandas()
            else:
                yield self._convert(rb)

    def observe(self, rb: pa.RecordBatch) -> None:
        """Record each column's type (unified over batches) and whether it holds nulls."""
        for name, col in zip(rb.schema.names, rb.columns, strict=True):
            old = self._types.get(name)
            if old is None or old == col.type:
                self._types[name] = col.type
            else:
                try:
                    self._types[name] = pa.unify_schemas(
                        [pa.schema([(name, old)]), pa.schema([(name, col.type)])],
                        promote_options="permissive",
                    ).field(name).type
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                    raise DataReadError(
                        f"{self.label}: column '{name}' changes type between batches ({old} then "
                        f"{col.type}); make the column one type (numbers or text) throughout"
                    ) from None
            self._nulls[name] = self._nulls.get(name, False) or col.null_count > 0

    def freeze(self) -> dict[str, Any]:
        """Fix the dtype of every observed column (after the first pass); return name -> dtype."""
        plan: dict[str, tuple[pa.DataType, Any]] = {}
        for name, t in self._types.items():
            has_null = self._nulls.get(name, False)
            plan[name] = (t, _pandas_dtype(t, has_null, self.nullable))
        self._plan = plan
        return {k: v[1] for k, v in plan.items()}

    def _convert(self, rb: pa.RecordBatch) -> pd.DataFrame:
        assert self._plan is not None
        cols = {}
        for name, col in zip(rb.schema.names, rb.columns, strict=True):
            t, dtype = self._plan.get(name, (col.type, None))
            if col.type != t:
                col = col.cast(t)
            s = col.to_pandas()
            if dtype is not None and s.dtype != dtype:
                s = s.astype(dtype)
            cols[name] = s
        return pd.DataFrame(cols)


def _pandas_dtype(t: pa.DataType, has_null: bool, nullable: bool) -> Any:
    """The dtype a whole-column ``to_pandas()`` gives (DuckDB: its nullable ``.df()`` dtypes)."""
    if nullable and has_null and (pa.types.is_integer(t) or pa.types.is_boolean(t)):
        if pa.types.is_boolean(t):
            return pd.BooleanDtype()
        prefix = "Int" if pa.types.is_signed_integer(t) else "UInt"
        return pd.api.types.pandas_dtype(f"{prefix}{t.bit_width}")
    sample = pa.array([None] if has_null else [], type=t)
    return sample.to_pandas().dtype


def _decode_dictionaries(rb: pa.RecordBatch) -> pa.RecordBatch:
    if not any(pa.types.is_dictionary(t) for t in rb.schema.types):
        return rb.replace_schema_metadata(None)
    arrays = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in rb.columns]
    return pa.RecordBatch.from_arrays(arrays, names=rb.schema.names)


def _rebatch(batches: Iterable[pa.RecordBatch], n: int) -> Iterator[pa.RecordBatch]:
    """Record batches of exactly ``n`` rows (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    have = 0
    for rb in batches:
        while rb.num_rows:
            take = min(n - have, rb.num_rows)
            pending.append(rb.slice(0, take))
            have += take
            rb = rb.slice(take)
            if have == n:
                yield _combine(pending)
                pending, have = [], 0
    if have:
        yield _combine(pending)


def _combine(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(parts) == 1:
        return parts[0]
    table = pa.Table.from_batches(parts).combine_chunks()
    return table.to_batches()[0] if table.num_rows else parts[0]


def _strip_names(raw: list[str], label: str) -> dict[str, str]:
    """Stripped name -> raw name (the readers strip surrounding spaces); refuse duplicates."""
    out: dict[str, str] = {}
    for r in raw:
        s = str(r).strip()
        if s in out:
            raise DataReadError(
                f"cannot read {label}: duplicate column name(s) '{s}'. Each column needs a "
                "unique name: rename or delete the duplicates."
            )
        out[s] = r
    return out


# --------------------------------------------------------------------------- Parquet


class ParquetSource(BatchSource):
    """A Parquet file or a directory of Parquet files (schemas unified across files)."""

    def __init__(self, path: Path, label: str | None = None) -> None:
        super().__init__()
        import pyarrow.dataset as ds

        self.label = label or str(path)
        try:
            dataset = ds.dataset(str(path), format="parquet")
            if path.is_dir():
                schemas = [f.physical_schema for f in dataset.get_fragments()]
                if not schemas:
                    raise DataReadError(f"cannot read {path}: the directory holds no Parquet files")
                schema = pa.unify_schemas(schemas, promote_options="permissive")
                dataset = ds.dataset(str(path), format="parquet", schema=schema)
        except DataReadError:
            raise
        except Exception as exc:
            raise DataReadError(f"cannot read {path} as Parquet: {_short(exc)}") from exc
        self._files = sorted(dataset.files) if path.is_dir() else [str(path)]
        self._names = _strip_names(dataset.schema.names, self.label)
        self.columns = tuple(self._names)

    def _arrow_batches(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        # file by file, row group by row group (no read-ahead beyond the row group being read)
        import pyarrow.parquet as pq

        raw = [self._names[c] for c in columns]
        for f in self._files:
            try:
                pf = pq.ParquetFile(f, pre_buffer=False)
                have = set(pf.schema_arrow.names)
                missing = [r for r in raw if r not in have]
                if missing:
                    raise DataReadError(
                        f"cannot read {f}: column(s) {', '.join(map(repr, missing))} are missing "
                        "from this file of the dataset"
                    )
                for rb in pf.iter_batches(batch_size=batch_rows, columns=raw, use_threads=True):
                    yield rb.select(raw).rename_columns(columns)
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataReadError(f"cannot read {f} as Parquet: {_short(exc)}") from exc


# --------------------------------------------------------------------------- CSV

_BOOL_TEXT = ["1", "True", "TRUE", "true", "0", "False", "FALSE", "false"]


class _TextCells:
    """Counts of numeric and text cells of a CSV column, with the first text cells' lines: a
    column of numbers with a few text cells is an error (as in the in-memory engine), not a
    category with one level per number."""

    def __init__(self) -> None:
        self.numeric = 0
        self.text = 0
        self.lines: list[int] = []
        self.examples: list[str] = []

    def add(self, col: pa.Array, offset: int) -> None:
        """Count one block's cells (``offset``: data rows before the block)."""
        if self.text > max(self.numeric, 1000):  # a text column: no need to go on counting
            return
        s = col.to_pandas()
        parsed = pd.to_numeric(s, errors="coerce").notna().to_numpy()
        present = s.notna().to_numpy()
        self.numeric += int(parsed.sum())
        bad = np.flatnonzero(present & ~parsed)
        self.text += bad.size
        if len(self.lines) < 10:
            self.lines += [offset + int(i) + 2 for i in bad[: 10 - len(self.lines)]]
            self.examples += [str(s.iloc[i]) for i in bad[:3]]

    def check(self, label: str, column: str) -> None:
        """Raise when the column is mostly numbers."""
        if self.text and self.numeric >= self.text:
            more = f" and {self.text - len(self.lines)} more" if self.text > len(self.lines) else ""
            shown = ", ".join(map(str, self.lines))
            ex = ", ".join(repr(e) for e in dict.fromkeys(self.examples))
            raise DataValidationError(
                f"{label}: column '{column}' holds numbers, but file line(s) {shown}{more} "
                f"({self.text} row(s)) hold text ({ex}): fix those cells or leave them blank "
                "(blank cells are dropped and counted)"
            )


class CsvSource(BatchSource):
    """A delimited text file read in blocks; column types settled by a whole-file pass.

    Arrow infers CSV types from the first block only; the in-memory reader infers them from the
    whole file. :meth:`settle_types` reads the model columns once as text and picks, per column,
    the first of int64, bool, float64 that parses every value (Arrow's inference order), else
    text, so every block is converted as the whole-file reader converts it.
    """

    def __init__(self, path: Path, block_bytes: int) -> None:
        super().__init__()
        import pyarrow.csv as pacsv

        from smesurvival.data.readers import legacy_encoding, sniff_delimiter, text_encoding

        self.label = str(path)
        self._path = path
        self._block = int(min(max(block_bytes, 1 << 16), 1 << 28))
        self._parse = pacsv.ParseOptions(delimiter=sniff_delimiter(path))
        declared = text_encoding(path)  # the in-memory reader's rules: BOM, UTF-16, not-text
        self._encoding = "utf8" if declared.replace("-", "") == "utf8" else declared
        self._legacy = lambda: legacy_encoding(path)  # CP949 (Korean) or Windows-1252
        self._column_types: dict[str, pa.DataType] = {}
        try:
            header = self._open([], None, 1 << 16)
            raw = header.schema.names
            header.close()
        except pa.ArrowInvalid as exc:
            if "utf8" not in str(exc).lower():
                raise DataReadError(f"cannot read {path} as CSV: {_short(exc)}") from exc
            self._encoding = self._legacy()
            header = self._open([], None, 1 << 16)
            raw = header.schema.names
            header.close()
        self._names = _strip_names(raw, self.label)
        self.columns = tuple(self._names)

    def _open(self, raw_cols: list[str], types: dict[str, pa.DataType] | None, block: int) -> Any:
        import pyarrow.csv as pacsv

        read = pacsv.ReadOptions(block_size=block, encoding=self._encoding)
        convert = pacsv.ConvertOptions(
            strings_can_be_null=True, include_columns=raw_cols or None,
            column_types=types or None,
        )
        return pacsv.open_csv(self._path, read_options=read, parse_options=self._parse,
                              convert_options=convert)

    def settle_types(self, columns: list[str]) -> None:
        """One pass over the text of ``columns``: the type the whole-file reader would infer."""
        import pyarrow.compute as pc

        raw = [self._names[c] for c in columns]
        cands = {c: ["int64", "bool", "float64"] for c in columns}
        seen = dict.fromkeys(columns, False)
        text = {c: _TextCells() for c in columns}  # numbers vs text cells, for the error below
        offset = 0
        try:
            reader = self._open(raw, dict.fromkeys(raw, pa.string()), self._block)
            for rb in reader:
                for c, r in zip(columns, raw, strict=True):
                    col = rb.column(rb.schema.get_field_index(r))
                    vals = col.drop_null()
                    if len(vals) == 0:
                        continue
                    seen[c] = True
                    keep = []
                    for t in cands[c]:
                        if t == "bool":
                            ok = bool(pc.all(pc.is_in(vals, value_set=pa.array(_BOOL_TEXT))).as_py())
                        else:
                            try:
                                vals.cast(pa.int64() if t == "int64" else pa.float64())
                                ok = True
                            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                                ok = False
                        if ok:
                            keep.append(t)
                    cands[c] = keep
                    if "float64" in keep or "int64" in keep:
                        text[c].numeric += len(vals)
                    elif not keep:  # only text-bearing blocks are parsed cell by cell
                        text[c].add(col, offset)
                offset += rb.num_rows
        except pa.ArrowInvalid as exc:
            if "utf8" in str(exc).lower() and self._encoding == "utf8":
                self._encoding = self._legacy()
                self.settle_types(columns)
                return
            raise DataReadError(f"cannot read {self.label} as CSV: {_short(exc)}") from exc
        types = {"int64": pa.int64(), "bool": pa.bool_(), "float64": pa.float64()}
        for c, r in zip(columns, raw, strict=True):
            if seen[c] and not cands[c]:
                text[c].check(self.label, c)
            if not seen[c]:
                self._column_types[r] = pa.null()
            elif cands[c]:
                self._column_types[r] = types[cands[c][0]]
            else:
                self._column_types[r] = pa.string()

    def _arrow_batches(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        raw = [self._names[c] for c in columns]
        types = {r: self._column_types[r] for r in raw if r in self._column_types}
        try:
            reader = self._open(raw, types, self._block)
            for rb in reader:
                yield rb.select(raw).rename_columns(columns)
        except pa.ArrowInvalid as exc:
            raise DataReadError(f"cannot read {self.label} as CSV: {_short(exc)}") from exc


# --------------------------------------------------------------------------- DuckDB


class DuckDBSource(BatchSource):
    """A DuckDB query (optionally on a database file), re-run once per pass.

    The query must return its rows in the same order on every run for the sorted-cluster
    shortcut; the engine checks this and falls back when it does not.
    """

    nullable = True

    def __init__(self, sql: str | None, database: Path | None) -> None:
        super().__init__()
        import duckdb

        self._db = database
        where = str(database) if database is not None else "<duckdb query>"
        self.label = where if database is not None else f"SQL: {_clip(sql or '')}"
        try:
            con = duckdb.connect(where if database is not None else ":memory:",
                                 read_only=database is not None)
        except Exception as exc:
            raise DataReadError(f"cannot open {where} as a DuckDB database: {_short(exc)}.") from exc
        try:
            if sql is None:
                tables = [r[0] for r in con.execute(
                    "SELECT table_name FROM information_schema.tables").fetchall()]
                if len(tables) != 1:
                    listing = ", ".join(tables) if tables else "none"
                    raise DataReadError(
                        f"cannot read {where}: a DuckDB database needs sql= (e.g. sql=\"SELECT * "
                        f"FROM firms\"); its tables are: {listing}."
                    )
                sql = f'SELECT * FROM "{tables[0]}"'
            if not isinstance(sql, str) or not sql.strip():
                raise DataReadError("the DuckDB source needs a non-empty SQL query")
            try:
                desc = con.execute(f"SELECT * FROM ({_strip_sql(sql)}) AS _q LIMIT 0").description
            except Exception as exc:
                raise DataReadError(
                    f"the SQL query failed on {where}: {_short(exc)}. Query: {_clip(sql)}"
                ) from exc
        finally:
            con.close()
        self._sql = sql
        self._names = _strip_names([d[0] for d in desc], self.label)
        self.columns = tuple(self._names)

    def _arrow_batches(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        import duckdb

        cols = ", ".join('"' + self._names[c].replace('"', '""') + '"' for c in columns)
        query = f"SELECT {cols} FROM ({_strip_sql(self._sql)}) AS _q"
        con = duckdb.connect(str(self._db) if self._db is not None else ":memory:",
                             read_only=self._db is not None)
        try:
            try:
                rel = con.sql(query)
                reader = (rel.to_arrow_reader(batch_rows) if hasattr(rel, "to_arrow_reader")
                          else rel.fetch_record_batch(batch_rows))
            except Exception as exc:
                raise DataReadError(
                    f"the SQL query failed on {self.label}: {_short(exc)}. Query: {_clip(self._sql)}"
                ) from exc
            for rb in reader:
                yield rb.rename_columns(columns)
        finally:
            con.close()


def _strip_sql(sql: str) -> str:
    return sql.strip().rstrip(";").strip()


# --------------------------------------------------------------------------- frames and iterators


class FrameSource(BatchSource):
    """A pandas DataFrame already in memory (sliced; its dtypes are kept as they are)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        super().__init__()
        self.label = "<data frame>"
        self._frame = frame
        self.columns = tuple(str(c) for c in frame.columns)

    def frames(self, columns: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
        sub = self._frame[columns]
        for s in range(0, len(sub), batch_rows):
            yield sub.iloc[s:s + batch_rows]

    def freeze(self) -> dict[str, Any]:
        return {str(c): t for c, t in self._frame.dtypes.items()}


class ChunkSource(BatchSource):
    """Chunks (DataFrames, Arrow batches or tables) from a factory called once per pass.

    A one-shot iterator is spooled, model columns only, to temporary Parquet files during the
    first pass and read back from there afterwards (disk, not memory).
    """

    def __init__(self, factory: Callable[[], Iterable[Chunk]] | None, oneshot: Iterator[Chunk] | None) -> None:
        super().__init__()
        self.label = "<iterator>"
        self._factory = factory
        self._oneshot = oneshot
        self._spool: tempfile.TemporaryDirectory[str] | None = None
        self._spooled: ParquetSource | None = None
        first_iter = iter(factory()) if factory is not None else oneshot
        assert first_iter is not None
        try:
            first = next(first_iter)
        except StopIteration:
            raise DataReadError("the iterator source yielded no data") from None
        self.columns = tuple(str(c) for c in _to_arrow(first).schema.names)
        if oneshot is not None:
            self._oneshot = _chain(first, first_iter)

    def _arrow_batches(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        if self._spooled is not None:
            yield from self._spooled._arrow_batches(columns, batch_rows)
            return
        if self._oneshot is not None:
            yield from self._spool_pass(columns, batch_rows)
            return
        assert self._factory is not None
        for chunk in self._factory():
            yield from _select(_to_arrow(chunk), columns).to_batches()

    def _spool_pass(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        assert self._oneshot is not None
        self._spool = tempfile.TemporaryDirectory(prefix="smesurvival-spool-")
        folder = Path(self._spool.name)
        pending: list[pa.Table] = []
        have = part = 0

        def flush() -> None:
            nonlocal pending, have, part
            if pending:
                table = pa.concat_tables(pending, promote_options="permissive")
                pq.write_table(table, folder / f"part-{part:06d}.parquet")
                part += 1
            pending, have = [], 0

        for chunk in self._oneshot:
            table = _select(_to_arrow(chunk), columns)
            pending.append(table)
            have += table.num_rows
            if have >= batch_rows:
                flush()
            yield from table.to_batches()
        flush()
        self._oneshot = None
        self._spooled = ParquetSource(folder, label=self.label)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.cleanup()
            self._spool = None


def _chain(first: Chunk, rest: Iterator[Chunk]) -> Iterator[Chunk]:
    yield first
    yield from rest


def _to_arrow(chunk: Any) -> pa.Table:
    if isinstance(chunk, pa.Table):
        return chunk
    if isinstance(chunk, pa.RecordBatch):
        return pa.Table.from_batches([chunk])
    if isinstance(chunk, pd.DataFrame):
        try:
            return pa.Table.from_pandas(chunk, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataReadError(f"a chunk of the iterator source cannot be read: {_short(exc)}") from exc
    raise UsageError(
        f"an iterator source must yield pandas DataFrames or Arrow record batches/tables; got "
        f"{type(chunk).__name__}"
    )


def _select(table: pa.Table, columns: list[str]) -> pa.Table:
    missing = [c for c in columns if c not in table.schema.names]
    if missing:
        raise DataReadError(
            f"a chunk of the iterator source lacks column(s) {', '.join(map(repr, missing))}"
        )
    return table.select(columns)


# --------------------------------------------------------------------------- dispatch


def open_source(
    source: Any, *, sql: str | None = None, block_bytes: int = 64 << 20,
) -> BatchSource:
    """A :class:`BatchSource` for a path (Parquet file or directory, CSV), a DuckDB query
    (``sql=``, ``source`` the optional database file), a DataFrame / Arrow table, a callable
    returning an iterable of chunks, a re-iterable of chunks, or a one-shot iterator."""
    if sql is not None:
        db = None if source is None else Path(source).expanduser()
        if db is not None and not db.is_file():
            raise DataReadError(f"cannot open DuckDB database {db}: no such file.")
        return DuckDBSource(sql, db)
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if not path.exists():
            raise DataReadError(f"cannot read {path}: no such file. Check the path and spelling.")
        if path.is_dir():
            return ParquetSource(path)
        ext = path.suffix.lower()
        if path.stat().st_size == 0:
            raise DataReadError(f"cannot read {path}: the file is empty (0 bytes).")
        if ext in (".parquet", ".pq"):
            return ParquetSource(path)
        if ext in (".csv", ".txt", ".tsv"):
            return CsvSource(path, block_bytes)
        if ext in (".duckdb", ".db"):
            return DuckDBSource(None, path)
        raise DataReadError(
            f"cannot stream {path}: the stream engine reads Parquet (.parquet, .pq, or a directory "
            f"of them), CSV (.csv, .txt, .tsv) and DuckDB (.duckdb, .db, or sql=); got "
            f"{ext or '(no extension)'!r}. Convert the file, or use engine='memory'."
        )
    if isinstance(source, pd.DataFrame):
        return FrameSource(source)
    if isinstance(source, pa.Table):
        table = source
        return ChunkSource(lambda: table.to_batches(), None)
    if isinstance(source, pa.RecordBatch):
        rb = source
        return ChunkSource(lambda: [rb], None)
    if callable(source):
        return ChunkSource(source, None)
    if isinstance(source, Iterator):
        return ChunkSource(None, source)
    if isinstance(source, Iterable):
        chunks = source
        return ChunkSource(lambda: iter(chunks), None)
    raise UsageError(
        "source must be a Parquet/CSV/DuckDB path, sql=..., a DataFrame, an Arrow table, or an "
        f"iterable of DataFrames / Arrow batches; got {type(source).__name__}"
    )


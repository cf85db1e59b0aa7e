"""Write the malformed firm files of ``tests/bad_inputs/`` (one broken thing per file).

Every file starts from the same real-looking firm data -- the synthetic cohort
``simulate_cohort(300, seed=9).frame`` with the default column names, also written unbroken as
``ok.csv`` -- and breaks one thing: a delimiter, an encoding, a number format, a header, a
value or the outcome. ``cases.toml`` beside this script says, for each file, which command
runs on it and what it must do (exit status, message, or warning and the correct result);
``tests/test_bad_inputs.py`` checks every case through the command line.

Regenerate the files (they are committed, small, and byte-for-byte reproducible)::

    .venv/bin/python tests/bad_inputs/make_inputs.py            # into tests/bad_inputs/
    .venv/bin/python tests/bad_inputs/make_inputs.py OTHER_DIR  # somewhere else

The 2 GB file of the size case is not committed: the test writes it into a temporary folder
with :func:`write_big_csv`.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
N_FIRMS = 300
SEED = 9  # a cohort on which the whole reference study runs (no rare-category separation)

#: English industry / region codes of the cohort -> Latin-1 and Korean (CP949) spellings.
LATIN1_INDUSTRY = {
    "machinery": "machines-outils", "electronics": "électronique", "chemicals": "chimie",
    "metals": "métaux", "auto_parts": "pièces auto", "textiles": "textile",
    "food": "agroalimentaire", "other_manufacturing": "autre manufacture",
    "software_it": "logiciel", "engineering_services": "ingénierie",
}
KOREAN_INDUSTRY = {
    "machinery": "기계", "electronics": "전자", "chemicals": "화학", "metals": "금속",
    "auto_parts": "자동차부품", "textiles": "섬유", "food": "식품",
    "other_manufacturing": "기타제조", "software_it": "소프트웨어", "engineering_services": "엔지니어링",
}
KOREAN_REGION = {
    "seoul_capital": "서울·수도권", "gyeongsang": "경상", "chungcheong": "충청", "jeolla": "전라",
    "gangwon_jeju": "강원·제주",
}

Writer = Callable[[Path], None]
CASES: dict[str, Writer] = {}


def case(name: str) -> Callable[[Writer], Writer]:
    """Register the writer of the file ``name``."""

    def register(fn: Writer) -> Writer:
        CASES[name] = fn
        return fn

    return register


def base() -> pd.DataFrame:
    """The unbroken firm data (300 firms, the default column names); a fresh copy each call."""
    return _cohort().copy()


@functools.lru_cache(maxsize=1)
def _cohort() -> pd.DataFrame:
    from smesurvival.data.synthetic import simulate_cohort

    return simulate_cohort(N_FIRMS, SEED).frame


def csv_text(frame: pd.DataFrame, sep: str = ",", **kw: object) -> str:
    """The frame as CSV text with ``\\n`` line ends."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False, sep=sep, lineterminator="\n", **kw)  # type: ignore[arg-type]
    return buf.getvalue()


def put(frame: pd.DataFrame, rows: list[int], column: str, values: list[object]) -> pd.DataFrame:
    """A copy of ``frame`` with ``values`` in ``column`` at the 0-based ``rows`` (file line = row + 2)."""
    out = frame.copy()
    out[column] = out[column].astype(object)
    for r, v in zip(rows, values, strict=True):
        out.loc[r, column] = v
    return out


def exiters(frame: pd.DataFrame) -> np.ndarray:
    return frame["exit_year"].notna().to_numpy()


def _write_csv(frame: pd.DataFrame, sep: str = ",", encoding: str = "utf-8") -> Writer:
    return lambda p: p.write_bytes(csv_text(frame, sep).encode(encoding))


# ---------------------------------------------------------------- control


@case("ok.csv")
def _ok(p: Path) -> None:
    _write_csv(base())(p)


# ---------------------------------------------------------------- delimiters and encodings


@case("semicolon.csv")
def _semicolon(p: Path) -> None:
    _write_csv(base(), sep=";")(p)


@case("tab_delimited.csv")
def _tab(p: Path) -> None:
    _write_csv(base(), sep="\t")(p)


@case("pipe.txt")
def _pipe(p: Path) -> None:
    _write_csv(base(), sep="|")(p)


@case("mixed_delimiters.csv")
def _mixed_delimiters(p: Path) -> None:
    """Header with commas, data rows with semicolons (two exports pasted together)."""
    lines = csv_text(base(), sep=";").splitlines()
    p.write_text("\n".join([lines[0].replace(";", ","), *lines[1:]]) + "\n")


@case("ragged_rows.csv")
def _ragged(p: Path) -> None:
    """An unquoted comma inside a value: file line 8 has one field too many."""
    lines = csv_text(base()).splitlines()
    cells = lines[7].split(",")
    cells[3] = "food, beverages"  # industry, written without quotes
    lines[7] = ",".join(cells)
    p.write_text("\n".join(lines) + "\n")


@case("bom_utf8.csv")
def _bom(p: Path) -> None:
    p.write_bytes(b"\xef\xbb\xbf" + csv_text(base()).encode("utf-8"))


@case("utf16_unicode_text.txt")
def _utf16(p: Path) -> None:
    """Excel's "Unicode Text" export: UTF-16 (little endian, with BOM), tab-delimited, CRLF."""
    text = csv_text(base(), sep="\t").replace("\n", "\r\n")
    p.write_bytes(text.encode("utf-16"))


@case("latin1.csv")
def _latin1(p: Path) -> None:
    d = base()
    d["industry"] = d["industry"].map(LATIN1_INDUSTRY)
    _write_csv(d, encoding="latin-1")(p)


@case("cp949_korean.csv")
def _cp949(p: Path) -> None:
    d = base()
    d["industry"] = d["industry"].map(KOREAN_INDUSTRY)
    d["region"] = d["region"].map(KOREAN_REGION)
    _write_csv(d, encoding="cp949")(p)


@case("not_text.csv")
def _not_text(p: Path) -> None:
    """An Excel workbook saved under a .csv name."""
    _xlsx(base(), p)


@case("text_as_xlsx.xlsx")
def _text_as_xlsx(p: Path) -> None:
    _write_csv(base())(p)


@case("legacy.xls")
def _legacy_xls(p: Path) -> None:
    """The old binary Excel format (only its OLE2 signature matters here)."""
    p.write_bytes(bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504))


@case("truncated.parquet")
def _truncated_parquet(p: Path) -> None:
    buf = io.BytesIO()
    base().to_parquet(buf, index=False)
    data = buf.getvalue()
    p.write_bytes(data[: len(data) // 2])


# ---------------------------------------------------------------- number formats


@case("thousands_separators.csv")
def _thousands(p: Path) -> None:
    d = base()
    d["sales"] = [f"{v:,.1f}" for v in d["sales"]]  # "1,234.5" (quoted by the CSV writer)
    _write_csv(d)(p)


@case("decimal_commas.csv")
def _decimal_commas(p: Path) -> None:
    """A European export: semicolons between fields, decimal commas."""
    d = base()
    for c in ("sales", "export_sales", "rd_expenditure", "weight"):
        d[c] = [f"{v:.1f}".replace(".", ",") for v in d[c]]
    _write_csv(d, sep=";")(p)


@case("european_thousands.csv")
def _european_thousands(p: Path) -> None:
    """Dots between thousands, decimal commas: 1.234,5."""
    d = base()
    d["sales"] = [f"{v:,.1f}".replace(",", " ").replace(".", ",").replace(" ", ".") for v in d["sales"]]
    _write_csv(d, sep=";")(p)


@case("currency_units.csv")
def _units(p: Path) -> None:
    d = base()
    d["sales"] = [f"{v:.1f} KRW m" for v in d["sales"]]
    _write_csv(d)(p)


@case("percent_signs.csv")
def _percent_signs(p: Path) -> None:
    d = base()
    ratio = d["export_sales"] / d["sales"]
    d = d.drop(columns=["export_sales"])
    d.insert(7, "export_ratio", [f"{100 * v:.1f}%" for v in ratio])
    _write_csv(d)(p)


@case("inf_strings.csv")
def _inf(p: Path) -> None:
    _write_csv(put(base(), [3, 10, 11], "sales", ["inf", "-Infinity", "INF"]))(p)


@case("nan_strings.csv")
def _nan(p: Path) -> None:
    """Common missing-value markers in a covariate: read as missing, rows dropped and counted."""
    _write_csv(put(base(), [2, 5, 8, 13, 21], "rd_employees", ["NaN", "nan", "NA", "N/A", "#N/A"]))(p)


@case("dot_missing.csv")
def _dot(p: Path) -> None:
    """SAS/Stata-style '.' for a missing value."""
    _write_csv(put(base(), [4, 6], "rd_expenditure", [".", "."]))(p)


@case("mixed_types.csv")
def _mixed_types(p: Path) -> None:
    _write_csv(put(base(), [1, 7, 30], "employees", ["12 persons", "n/a?", "about 40"]))(p)


@case("markup_brackets.csv")
def _markup(p: Path) -> None:
    """Cells with square brackets, which a terminal renderer may take for markup."""
    _write_csv(put(base(), [2, 3], "employees", ["[/b]", "[red]12"]))(p)


@case("missing_firm_id.csv")
def _missing_id(p: Path) -> None:
    _write_csv(put(base(), [5, 6], "firm_id", [None, " "]))(p)


# ---------------------------------------------------------------- Excel


def _xlsx(frame: pd.DataFrame, p: Path, *, title: str | None = None,
          groups: list[tuple[str, int, int]] | None = None) -> None:
    """Write ``frame`` to a workbook; ``title`` adds a merged title row above the header,
    ``groups`` (label, first column, last column; 1-based) a merged group-header row."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "firms"
    ncol = frame.shape[1]
    top = 0
    if title is not None:
        ws.cell(row=1, column=1, value=title)
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=ncol)
        top = 1
    if groups is not None:
        for label, first, last in groups:
            ws.cell(row=top + 1, column=first, value=label)
            if last > first:
                ws.merge_cells(start_row=top + 1, start_column=first, end_row=top + 1, end_column=last)
        top += 1
    for j, name in enumerate(frame.columns, start=1):
        ws.cell(row=top + 1, column=j, value=str(name))
    for i, row in enumerate(frame.itertuples(index=False), start=top + 2):
        for j, v in enumerate(row, start=1):
            ws.cell(row=i, column=j, value=_cell(v))
    stamp = dt.datetime(2024, 1, 1)
    wb.properties.created = stamp
    wb.properties.modified = stamp
    wb.save(p)
    _fix_zip_times(p)


def _cell(v: object) -> object:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def _fix_zip_times(p: Path) -> None:
    """Rewrite a zip with fixed member times and core properties, so regenerated files match."""
    import re
    import zipfile

    src = p.read_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*", rb"\g<1>2024-01-01T00:00:00Z", data)
            fixed = zipfile.ZipInfo(info.filename, date_time=(2024, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(fixed, data)
    p.write_bytes(out.getvalue())


@case("merged_title_row.xlsx")
def _merged_title(p: Path) -> None:
    _xlsx(base().head(60), p, title="SME survey 2003: firm register (won, millions)")


@case("merged_group_header.xlsx")
def _merged_groups(p: Path) -> None:
    d = base().head(60)
    cols = list(d.columns)
    groups = [("Firm", 1, cols.index("region") + 1),
              ("Size and sales", cols.index("employees") + 1, cols.index("export_sales") + 1),
              ("Technology", cols.index("rd_employees") + 1, cols.index("rd_alliance") + 1),
              ("Exit", cols.index("exit_year") + 1, cols.index("last_year_observed") + 1)]
    _xlsx(d, p, groups=groups)


@case("header_only.xlsx")
def _header_only_xlsx(p: Path) -> None:
    _xlsx(base().head(0), p)


@case("empty_sheet.xlsx")
def _empty_xlsx(p: Path) -> None:
    _xlsx(pd.DataFrame(), p)


@case("excel_dates.xlsx")
def _excel_dates(p: Path) -> None:
    d = base().head(60)
    d["founding_year"] = [dt.datetime(int(y), 3, 1) for y in d["founding_year"]]
    _xlsx(d, p)


# ---------------------------------------------------------------- empty files and headers


@case("empty.csv")
def _empty(p: Path) -> None:
    p.write_bytes(b"")


@case("blank_lines.csv")
def _blank(p: Path) -> None:
    p.write_text("\n  \n\n")


@case("header_only.csv")
def _header_only(p: Path) -> None:
    p.write_text(csv_text(base()).splitlines()[0] + "\n")


@case("duplicate_columns.csv")
def _dup_cols(p: Path) -> None:
    d = base()
    d.insert(7, "sales_dup", d["sales"])
    text = csv_text(d).replace("sales_dup", "sales", 1)
    p.write_text(text)


@case("duplicate_columns_spaces.csv")
def _dup_cols_spaces(p: Path) -> None:
    d = base()
    d[" employees "] = d["employees"]
    _write_csv(d)(p)


@case("missing_column.csv")
def _missing_column(p: Path) -> None:
    _write_csv(base().drop(columns=["founding_year"]))(p)


@case("misspelled_column.csv")
def _misspelled(p: Path) -> None:
    _write_csv(base().rename(columns={"founding_year": "foundng_year"}))(p)


# ---------------------------------------------------------------- identifiers


@case("duplicate_firm_ids.csv")
def _dup_ids(p: Path) -> None:
    _write_csv(put(base(), [10, 20], "firm_id", [3, 4]))(p)


@case("duplicate_rows.csv")
def _dup_rows(p: Path) -> None:
    d = base()
    _write_csv(pd.concat([d, d.iloc[[15, 16]]], ignore_index=True))(p)


# ---------------------------------------------------------------- years


@case("dates_not_years.csv")
def _dates(p: Path) -> None:
    d = base()
    d["founding_year"] = [f"{y}-03-15" for y in d["founding_year"]]
    _write_csv(d)(p)


@case("dates_day_first.csv")
def _dates_dmy(p: Path) -> None:
    d = base()
    d["survey_year"] = [f"30/06/{y}" for y in d["survey_year"]]
    _write_csv(d)(p)


@case("two_digit_years.csv")
def _two_digit(p: Path) -> None:
    d = base()
    d["founding_year"] = d["founding_year"] % 100
    _write_csv(d)(p)


@case("fractional_year.csv")
def _fractional(p: Path) -> None:
    _write_csv(put(base(), [12], "founding_year", [1994.5]))(p)


@case("future_survey_year.csv")
def _future_survey(p: Path) -> None:
    d = base()
    d.loc[[0, 1], ["survey_year", "last_year_observed"]] = [[2093, 2098], [2093, 2098]]
    _write_csv(d)(p)


@case("future_exit_year.csv")
def _future_exit(p: Path) -> None:
    d = base()
    i = int(np.flatnonzero(exiters(d))[0])
    d.loc[i, "exit_year"] = 2097
    d["last_year_observed"] = d["last_year_observed"].where(d.index != i, 2098)
    _write_csv(d)(p)


@case("founding_after_survey.csv")
def _founding_after(p: Path) -> None:
    _write_csv(put(base(), [9], "founding_year", [2005]))(p)


# ---------------------------------------------------------------- values


def _ratio_frame(scale: float) -> pd.DataFrame:
    """The export share given directly (``export_ratio`` replaces ``export_sales``)."""
    d = base()
    ratio = (d["export_sales"] / d["sales"]).round(6) * scale
    d = d.drop(columns=["export_sales"])
    d.insert(7, "export_ratio", ratio.round(4))
    return d


@case("export_percent.csv")
def _export_percent(p: Path) -> None:
    """Export ratio in percent (0-100) instead of a share: detected and divided by 100."""
    _write_csv(_ratio_frame(100.0))(p)


@case("export_share_typos.csv")
def _export_typos(p: Path) -> None:
    """Shares with two values typed as percentages: not a percent column, so an error."""
    d = _ratio_frame(1.0)
    _write_csv(put(d, [4, 17], "export_ratio", [35.0, 60.0]))(p)


@case("export_percent_over_100.csv")
def _export_over(p: Path) -> None:
    d = _ratio_frame(100.0)
    _write_csv(put(d, [6], "export_ratio", [140.0]))(p)


@case("negative_sales.csv")
def _negative_sales(p: Path) -> None:
    _write_csv(put(base(), [7, 8], "sales", [-1250.0, -3.5]))(p)


@case("exit_before_founding.csv")
def _exit_before_founding(p: Path) -> None:
    d = base()
    i = int(np.flatnonzero(exiters(d))[0])
    d.loc[i, "founding_year"] = 2003
    d.loc[i, "survey_year"] = 2003
    d["exit_year"] = d["exit_year"].astype("Int64")
    d.loc[i, "exit_year"] = 2001
    _write_csv(d)(p)


@case("exit_month_13.csv")
def _month13(p: Path) -> None:
    d = base()
    i = int(np.flatnonzero(exiters(d))[1])
    d["exit_month"] = d["exit_month"].astype("Int64")
    d.loc[i, "exit_month"] = 13
    _write_csv(d)(p)


@case("zero_weight.csv")
def _zero_weight(p: Path) -> None:
    _write_csv(put(base(), [2], "weight", [0.0]))(p)


# ---------------------------------------------------------------- the outcome and the models


@case("all_survive.csv")
def _all_survive(p: Path) -> None:
    d = base()
    d[["exit_year", "exit_month"]] = pd.NA
    d["exit_type"] = None
    _write_csv(d)(p)


@case("none_survive.csv")
def _none_survive(p: Path) -> None:
    d = base()
    rng = np.random.default_rng(1)
    keep = exiters(d)
    d["exit_year"] = np.where(keep, d["exit_year"].astype("Float64").fillna(0).to_numpy(float),
                              2004 + rng.integers(0, 5, len(d))).astype(int)
    d["exit_month"] = np.where(keep, d["exit_month"].astype("Float64").fillna(0).to_numpy(float),
                               1 + rng.integers(0, 12, len(d))).astype(int)
    d["exit_type"] = d["exit_type"].where(keep, "failure")
    _write_csv(d)(p)


@case("single_firm_industry.csv")
def _single_firm(p: Path) -> None:
    """One firm in its own industry: its dummy predicts that firm's outcome perfectly."""
    _write_csv(put(base(), [11], "industry", ["mining"]))(p)


@case("perfect_separation.csv")
def _separation(p: Path) -> None:
    """Every firm with an R&D alliance survives, and alliances are common: the estimate of the
    alliance coefficient runs to infinity."""
    d = base()
    alliance = np.where(exiters(d), 0, (np.arange(len(d)) % 2 == 0).astype(int))
    d["rd_alliance"] = alliance
    _write_csv(d)(p)


@case("collinear_controls.csv")
def _collinear(p: Path) -> None:
    """employees = firm age + 1, so log(employees) equals log(1 + age): two identical controls."""
    d = base()
    d["employees"] = d["survey_year"] - d["founding_year"] + 1
    d["rd_employees"] = np.minimum(d["rd_employees"], d["employees"])
    _write_csv(d)(p)


@case("constant_control.csv")
def _constant(p: Path) -> None:
    """Every firm founded in 1993: log firm age is constant, a copy of the intercept."""
    d = base()
    d["founding_year"] = 1993
    _write_csv(d)(p)


# ---------------------------------------------------------------- study specs


def _quick_spec() -> str:
    """The reference study (lee2012.toml) without its bootstrap replicates (fast to run)."""
    from importlib import resources

    text = resources.files("smesurvival.study").joinpath("lee2012.toml").read_text(encoding="utf-8")
    head = ("# Generated by tests/bad_inputs/make_inputs.py from the built-in lee2012.toml: the same\n"
            "# study with bootstrap = 0 (delta-method intervals only), so that it runs fast.\n")
    out = text.replace("bootstrap = 1000", "bootstrap = 0")
    if out.count("bootstrap = 0") != 2:
        raise RuntimeError("lee2012.toml changed: update _quick_spec")
    return head + out


@case("lee2012_quick.toml")
def _quick(p: Path) -> None:
    p.write_text(_quick_spec(), encoding="utf-8")


@case("export_ratio.toml")
def _ratio_spec(p: Path) -> None:
    """The quick study reading the export share from a column instead of export / total sales."""
    text = _quick_spec()
    line = 'export_sales = "export_sales"'
    if line not in text:
        raise RuntimeError("lee2012.toml changed: update _ratio_spec")
    p.write_text(text.replace(line, 'export_ratio = "export_ratio"'), encoding="utf-8")


# ---------------------------------------------------------------- the big file


def write_big_csv(path: Path, target_bytes: int = 2 * 10**9, block_rows: int = 20_000) -> int:
    """Write a firm CSV of at least ``target_bytes`` by repeating one block of rows.

    The block is made once (firm ids are repeated, which does not matter for a size check);
    writing it again and again costs only disk bandwidth. Returns the size written.
    """
    d = base()
    reps = -(-block_rows // len(d))
    block = pd.concat([d] * reps, ignore_index=True).head(block_rows)
    lines = csv_text(block).encode("utf-8")
    header, body = lines.split(b"\n", 1)
    written = 0
    with open(path, "wb") as fh:
        fh.write(header + b"\n")
        written += len(header) + 1
        while written < target_bytes:
            fh.write(body)
            written += len(body)
    return written


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    out.mkdir(parents=True, exist_ok=True)
    for name, write in CASES.items():
        write(out / name)
    print(f"wrote {len(CASES)} files into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

"""Readers: round trip through every format, provenance (SHA-256), and clear read errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smesurvival.data import LoadedData, read_data, read_sql
from smesurvival.errors import DataReadError, SmeSurvivalError


@pytest.fixture
def firms() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "firm_id": [1, 2, 3],
            "industry": ["food", "machinery", "chemicals"],
            "employees": [12.0, 250.0, 40.0],
            "export_sales": [0.5, 100.25, 0.0],
        }
    )


def _check(loaded: LoadedData, expected: pd.DataFrame, path: Path, fmt: str) -> None:
    got = loaded.frame
    assert list(got.columns) == list(expected.columns)
    assert got["industry"].tolist() == expected["industry"].tolist()
    for col in ("firm_id", "employees", "export_sales"):
        np.testing.assert_allclose(got[col].to_numpy(dtype=float), expected[col].to_numpy(dtype=float))
    assert loaded.source.format == fmt
    assert loaded.source.n_rows == len(expected)
    assert loaded.source.n_columns == expected.shape[1]
    assert loaded.source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert isinstance(got.index, pd.RangeIndex)


def test_csv_round_trip(tmp_path: Path, firms: pd.DataFrame) -> None:
    path = tmp_path / "firms.csv"
    firms.to_csv(path, index=False)
    _check(read_data(path), firms, path, "csv")


def test_csv_empty_cells_are_missing_and_text_stays_text(tmp_path: Path) -> None:
    path = tmp_path / "firms.csv"
    path.write_text("firm_id,industry,employees\n1,,abc\n2,food,\n")
    df = read_data(path).frame
    assert df["industry"].isna().tolist() == [True, False]
    assert df["employees"].tolist()[0] == "abc"
    assert pd.isna(df["employees"].tolist()[1])


def test_txt_tab_delimited(tmp_path: Path, firms: pd.DataFrame) -> None:
    path = tmp_path / "firms.txt"
    firms.to_csv(path, index=False, sep="\t")
    _check(read_data(path), firms, path, "csv")


def test_csv_semicolon_and_latin1(tmp_path: Path) -> None:
    path = tmp_path / "firms.csv"
    path.write_bytes("firm_id;industry\n1;Métal\n".encode("latin-1"))
    df = read_data(path).frame
    assert df["industry"].tolist() == ["Métal"]


def test_parquet_round_trip(tmp_path: Path, firms: pd.DataFrame) -> None:
    for ext in ("parquet", "pq"):
        path = tmp_path / f"firms.{ext}"
        firms.to_parquet(path, index=False)
        _check(read_data(path), firms, path, "parquet")


def test_excel_round_trip_and_sheets(tmp_path: Path, firms: pd.DataFrame) -> None:
    path = tmp_path / "firms.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as xw:
        firms.head(1).to_excel(xw, sheet_name="notes", index=False)
        firms.to_excel(xw, sheet_name="data", index=False)
    _check(read_data(path, sheet="data"), firms, path, "excel")
    _check(read_data(path, sheet=1), firms, path, "excel")
    assert len(read_data(path).frame) == 1  # the first sheet by default
    with pytest.raises(DataReadError, match="no sheet named 'nope'.*notes, data"):
        read_data(path, sheet="nope")


def test_stata_round_trip(tmp_path: Path, firms: pd.DataFrame) -> None:
    path = tmp_path / "firms.dta"
    firms.to_stata(path, write_index=False)
    _check(read_data(path), firms, path, "stata")


def test_stata_value_labels_become_text(tmp_path: Path) -> None:
    path = tmp_path / "labelled.dta"
    df = pd.DataFrame({"firm_id": [1, 2], "exit_type": pd.Categorical(["failure", "merger"])})
    df.to_stata(path, write_index=False)
    assert read_data(path).frame["exit_type"].tolist() == ["failure", "merger"]


def test_spss_round_trip(tmp_path: Path, firms: pd.DataFrame) -> None:
    import pyreadstat

    path = tmp_path / "firms.sav"
    pyreadstat.write_sav(firms, str(path))
    _check(read_data(path), firms, path, "spss")


def test_duckdb_file_and_sql(tmp_path: Path, firms: pd.DataFrame) -> None:
    import duckdb

    path = tmp_path / "firms.duckdb"
    con = duckdb.connect(str(path))
    con.register("src", firms)
    con.execute("CREATE TABLE firms AS SELECT * FROM src")
    con.close()
    _check(read_data(path, sql="SELECT * FROM firms ORDER BY firm_id"), firms, path, "duckdb")
    _check(read_data(path), firms, path, "duckdb")  # single table: sql may be omitted
    with pytest.raises(DataReadError, match="SQL query failed"):
        read_data(path, sql="SELECT * FROM nowhere")


def test_duckdb_several_tables_need_sql(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "two.db"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE a AS SELECT 1 AS x; CREATE TABLE b AS SELECT 2 AS y")
    con.close()
    with pytest.raises(DataReadError, match="needs sql=.*tables are: a, b"):
        read_data(path)


def test_read_sql_over_a_parquet_file(tmp_path: Path, firms: pd.DataFrame) -> None:
    path = tmp_path / "firms.parquet"
    firms.to_parquet(path, index=False)
    loaded = read_sql(f"SELECT * FROM '{path}' ORDER BY firm_id")
    assert loaded.source.format == "sql"
    assert loaded.source.sha256 is None
    assert loaded.frame["employees"].tolist() == [12.0, 250.0, 40.0]
    with pytest.raises(DataReadError, match="query failed"):
        read_sql("SELEC nonsense")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataReadError, match=r"nothere\.csv: no such file"):
        read_data(tmp_path / "nothere.csv")


def test_unknown_extension_lists_accepted(tmp_path: Path) -> None:
    path = tmp_path / "firms.json"
    path.write_text("{}")
    with pytest.raises(DataReadError, match=r"unknown file extension '\.json'.*\.csv.*\.parquet.*\.xlsx"):
        read_data(path)


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataReadError, match="empty"):
        read_data(empty)
    header = tmp_path / "header.csv"
    header.write_text("firm_id,employees\n")
    with pytest.raises(DataReadError, match="no data rows"):
        read_data(header)


def test_duplicate_column_names(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("firm_id,employees,employees\n1,2,3\n")
    with pytest.raises(DataReadError, match="duplicate column name.*'employees'"):
        read_data(path)


def test_unreadable_content(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataReadError, match=r"broken\.parquet as PARQUET"):
        read_data(path)


def test_errors_belong_to_the_family() -> None:
    assert issubclass(DataReadError, SmeSurvivalError)


def test_sha256_is_streamed_correctly(tmp_path: Path) -> None:
    from smesurvival.data import file_sha256

    path = tmp_path / "big.bin"
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)
    path.write_bytes(data)
    assert file_sha256(path, chunk_size=1000) == hashlib.sha256(data).hexdigest()


def test_encodings_are_detected(tmp_path: Path) -> None:
    text = "firm_id;industry;region\n1;기계;서울\n2;전자;경상\n"
    cases = {
        "korean.csv": (text.encode("cp949"), "cp949"),
        "bom.csv": (b"\xef\xbb\xbf" + text.encode("utf-8"), "utf-8-sig"),
        "utf16.txt": (text.replace(";", "\t").encode("utf-16"), "utf-16"),
        "french.csv": ("firm_id;industry\n1;Métal\n2;Ærø Électrique\n".encode("cp1252"), "cp1252"),
    }
    for name, (data, enc) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        loaded = read_data(path)
        assert loaded.source.encoding == enc, name
        assert list(loaded.frame.columns)[:2] == ["firm_id", "industry"], name
        if enc != "cp1252":
            assert loaded.frame["industry"].tolist() == ["기계", "전자"], name
    assert read_data(tmp_path / "french.csv").frame["industry"].tolist() == ["Métal", "Ærø Électrique"]


def test_explicit_encoding_and_its_scope(tmp_path: Path) -> None:
    path = tmp_path / "korean.csv"
    path.write_bytes("firm_id,industry\n1,기계\n".encode("euc-kr"))
    assert read_data(path, encoding="euc-kr").frame["industry"].tolist() == ["기계"]
    pq_path = tmp_path / "f.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(pq_path)
    with pytest.raises(DataReadError, match="encoding= applies only to text files"):
        read_data(pq_path, encoding="cp949")


def test_binary_content_under_a_text_name(tmp_path: Path, firms: pd.DataFrame) -> None:
    xlsx = tmp_path / "firms.xlsx"
    firms.to_excel(xlsx, index=False)
    fake = tmp_path / "firms.csv"
    fake.write_bytes(xlsx.read_bytes())
    with pytest.raises(DataReadError, match=r"as text \(CSV\): the file is a zip archive"):
        read_data(fake)
    text = tmp_path / "text.xlsx"
    text.write_text("firm_id,employees\n1,2\n")
    with pytest.raises(DataReadError, match="as EXCEL: the file is not a workbook"):
        read_data(text)


def test_rows_with_the_wrong_number_of_fields_are_located(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("firm_id,industry,employees\n1,food,3\n2,food, drinks,4\n3,metal,5\n")
    with pytest.raises(DataReadError, match=r"file line 3 has 4 field\(s\) but the header \(line 1\) has 3"):
        read_data(path)
    path.write_text("firm_id,industry,employees\n1;food;3\n")
    with pytest.raises(DataReadError, match="mixes delimiters"):
        read_data(path)


def test_excel_header_must_be_one_row_of_names(tmp_path: Path, firms: pd.DataFrame) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Firm register 2003"])
    ws.merge_cells("A1:D1")
    ws.append(list(firms.columns))
    for row in firms.itertuples(index=False):
        ws.append(list(row))
    path = tmp_path / "title.xlsx"
    wb.save(path)
    with pytest.raises(DataReadError, match=r"cell\(s\) B1, C1, D1 are empty.*Row 2 looks like the row of column names"):
        read_data(path)


def test_excel_columns_without_name_or_data_are_dropped(tmp_path: Path, firms: pd.DataFrame) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append([*firms.columns, None])
    for row in firms.itertuples(index=False):
        ws.append([*row, None])
    ws.cell(row=10, column=6, value=None)  # a formatted but empty cell far to the right
    path = tmp_path / "wide.xlsx"
    wb.save(path)
    assert list(read_data(path).frame.columns) == list(firms.columns)


def test_files_above_the_size_limit_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from smesurvival.data.readers import max_file_size
    from smesurvival.errors import FileTooLargeError

    path = tmp_path / "firms.csv"
    path.write_text("firm_id,employees\n" + "".join(f"{i},{i % 50}\n" for i in range(3000)))
    with pytest.raises(FileTooLargeError, match=r"the file is 2\d\.\d kB, above the 10\.0 kB"):
        read_data(path, max_size=10_000)
    monkeypatch.setenv("SMESURVIVAL_MAX_FILE_SIZE", "10kB")
    assert max_file_size() == 10_000
    with pytest.raises(FileTooLargeError, match="SMESURVIVAL_MAX_FILE_SIZE=1GB"):
        read_data(path)
    monkeypatch.setenv("SMESURVIVAL_MAX_FILE_SIZE", "none")
    assert len(read_data(path).frame) == 3000
    monkeypatch.setenv("SMESURVIVAL_MAX_FILE_SIZE", "lots")
    with pytest.raises(DataReadError, match="is not a size"):
        read_data(path)
    monkeypatch.delenv("SMESURVIVAL_MAX_FILE_SIZE")
    assert max_file_size() == 10**9


def test_blank_file_and_legacy_excel(tmp_path: Path) -> None:
    blank = tmp_path / "blank.csv"
    blank.write_text("\n \n\n")
    with pytest.raises(DataReadError, match=r"no data \(only blank lines\)"):
        read_data(blank)
    xls = tmp_path / "old.xls"
    xls.write_bytes(bytes.fromhex("d0cf11e0a1b11ae1"))
    with pytest.raises(DataReadError, match=r"'\.xls' \(the old Excel 97-2003 format"):
        read_data(xls)

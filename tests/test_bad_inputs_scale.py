"""A stray text cell in a numeric column, or an identifier used as a factor, stops the fit with
the column and the file line -- in memory and when streaming a large CSV -- instead of turning
the column into one dummy per distinct value (which ran out of memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smesurvival.errors import DataValidationError
from smesurvival.models.fit import fit
from smesurvival.scale.stream import fit_stream


def _frame(n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    x1 = rng.normal(size=n)
    return pd.DataFrame({"y": (rng.uniform(size=n) < 1 / (1 + np.exp(-x1))).astype(int),
                         "x1": x1, "x2": rng.normal(size=n), "firm": [f"F{i:05d}" for i in range(n)]})


def _with_text_cell(path: Path, n: int, line: int) -> Path:
    """Write the frame as CSV with 'abc' in column x1 on file line ``line`` (header = 1)."""
    _frame(n).to_csv(path, index=False)
    lines = path.read_text().splitlines()
    cells = lines[line - 1].split(",")
    cells[1] = "abc"
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_text_cell_in_a_numeric_column_in_memory() -> None:
    d = _frame().astype({"x1": object})
    d.loc[1234, "x1"] = "n/a?"
    with pytest.raises(DataValidationError, match=r"column 'x1' holds numbers, but file line\(s\) 1236 "):
        fit("y ~ x1 + x2", d)


def test_identifier_as_a_factor_in_memory() -> None:
    with pytest.raises(DataValidationError, match="3,000 distinct text values"):
        fit("y ~ x1 + firm", _frame())


def test_text_cell_deep_in_a_streamed_csv(tmp_path: Path) -> None:
    """The bad cell sits in a later block than the first; the line number is exact."""
    path = _with_text_cell(tmp_path / "panel.csv", 60_000, 45_678)
    with pytest.raises(DataValidationError, match=r"panel.csv: column 'x1' holds numbers, but file line\(s\) 45678 \(1 row"):
        fit_stream("y ~ x1 + x2", path, batch_rows=4096, memory=1 << 20)


def test_mixed_codes_in_an_explicit_category_pass() -> None:
    d = _frame().assign(code=lambda f: np.where(np.arange(len(f)) % 7 == 0, "3A", "10"))
    assert "C(code)[T.3A]" in fit("y ~ x1 + C(code)", d).terms


@pytest.mark.parametrize("name", ["bom_utf8.csv", "cp949_korean.csv", "latin1.csv"])
def test_streamed_csv_decodes_as_the_in_memory_reader(name: str) -> None:
    """The stream engine's CSV source uses the readers' encoding rules (BOM, CP949, Latin-1)."""
    from smesurvival.data.readers import read_data
    from smesurvival.scale.sources import CsvSource

    path = Path(__file__).parent / "bad_inputs" / name
    src = CsvSource(path, 1 << 20)
    assert list(src.columns) == [str(c) for c in read_data(path).frame.columns]
    cols = ["firm_id", "industry", "employees"]
    src.settle_types(cols)  # the engine's first pass: types (and a non-UTF-8 file) settled
    frames = list(src.frames(cols, 10_000))
    mem = read_data(path).frame
    got = pd.concat(frames, ignore_index=True)
    assert got["industry"].astype(str).tolist() == mem["industry"].astype(str).tolist()
    np.testing.assert_allclose(got["employees"].to_numpy(float), mem["employees"].to_numpy(float))

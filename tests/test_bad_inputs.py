"""Every malformed input of ``tests/bad_inputs/`` behaves as ``cases.toml`` documents.

Each case runs through the command line in-process: the exit status, the message, no
traceback, and for ``study`` a full report folder on success and none at all on failure. Some
cases also check that the result is right (the file reads to the same table as the unbroken
one, Korean text is decoded, a percent column becomes shares). The 2 GB file is written on the
fly into a temporary folder and removed afterwards.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from smesurvival.data import ColumnMap, MeasureOptions, build_measures, read_data, validate_firms

HERE = Path(__file__).parent / "bad_inputs"
CASES: list[dict[str, Any]] = tomllib.loads((HERE / "cases.toml").read_text(encoding="utf-8"))["case"]
REPORT_FILES = ("report.html", "report.md", "results.json")


def _make_inputs() -> Any:
    """The generator script as a module (no bytecode written into the committed folder)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bad_inputs_make", HERE / "make_inputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    old, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = old
    return module


def _id(case: dict[str, Any]) -> str:
    return f"{case['file']}-{case['command']}"


def _params() -> list[Any]:
    out = []
    for case in CASES:
        marks = [pytest.mark.xfail(reason=case["known_issue"], strict=True)] if "known_issue" in case else []
        out.append(pytest.param(case, id=_id(case), marks=marks))
    return out


def _flat(text: str) -> str:
    return " ".join(text.split())


def _argv(case: dict[str, Any], out_dir: Path) -> list[str]:
    path = str(HERE / case["file"])
    if case["command"] == "validate":
        return ["validate", path]
    if case["command"] == "study":
        spec = case.get("spec", "lee2012")
        spec = str(HERE / spec) if spec.endswith(".toml") else spec
        return ["study", spec, "--data", path, "--out", str(out_dir)]
    raise ValueError(f"unknown command {case['command']!r} in cases.toml")


@pytest.mark.parametrize("case", _params())
def test_bad_input(case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "report"
    code, out, err = run_cli(_argv(case, out_dir), capsys)
    assert "Traceback" not in err, err
    assert code == case["exit"], f"exit {code}; stderr: {err}; stdout: {out[-2000:]}"
    shown = _flat(err if case["exit"] != 0 else out)
    wanted = case["message"] if isinstance(case["message"], list) else [case["message"]]
    for fragment in wanted:
        assert _flat(fragment) in shown, f"{fragment!r} not in: {shown[:3000]}"
    if case["command"] == "study":
        if case["exit"] == 0:
            assert all((out_dir / f).is_file() for f in REPORT_FILES)
        else:
            assert not out_dir.exists(), "a failed study left an output folder behind"
            assert not [p for p in tmp_path.iterdir() if p.name != "report"], "temporary files left"
    for check in case.get("checks", []):
        CHECKS[check["kind"]](case, check, out_dir)


# ------------------------------------------------------------------ checks of the result


def _same_as_ok(case: dict[str, Any], check: dict[str, Any], out_dir: Path) -> None:
    got = read_data(HERE / case["file"]).frame
    want = read_data(HERE / "ok.csv").frame
    assert list(got.columns) == list(want.columns)
    for col in want.columns:
        if pd.api.types.is_numeric_dtype(want[col].dtype):
            np.testing.assert_allclose(got[col].to_numpy(dtype=float), want[col].to_numpy(dtype=float),
                                       rtol=0, atol=0, equal_nan=True, err_msg=col)
        else:
            assert got[col].astype("string").fillna("").tolist() == want[col].astype("string").fillna("").tolist(), col


def _decoded(case: dict[str, Any], check: dict[str, Any], out_dir: Path) -> None:
    values = set(read_data(HERE / case["file"]).frame[check["column"]].dropna().astype(str))
    missing = [v for v in check["values"] if v not in values]
    assert not missing, f"not decoded: {missing}; got {sorted(values)[:10]}"


def _encoding(case: dict[str, Any], check: dict[str, Any], out_dir: Path) -> None:
    assert read_data(HERE / case["file"]).source.encoding == check["value"]


def _export_share(case: dict[str, Any], check: dict[str, Any], out_dir: Path) -> None:
    """The measure is the share: export sales / sales of the unbroken file (to the 1e-6 of
    the file's rounding), and validation says it converted the column."""
    frame = read_data(HERE / case["file"]).frame
    columns = ColumnMap.from_dict({"export_ratio": "export_ratio"})
    report = validate_firms(frame, columns)
    assert report.ok and [i.rule for i in report.warnings] == ["export_ratio given in percent"]
    mf = build_measures(frame, columns, MeasureOptions())
    ok = read_data(HERE / "ok.csv").frame
    share = (ok["export_sales"] / ok["sales"]).to_numpy()
    kept = mf.frame["row"].to_numpy() - 2
    np.testing.assert_allclose(mf.frame["export_ratio"].to_numpy(), share[kept], atol=2e-6)
    assert "divided by 100" in mf.definitions["export_ratio"]


def _results(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / "results.json").read_text(encoding="utf-8"))


def _report_note(case: dict[str, Any], check: dict[str, Any], out_dir: Path) -> None:
    notes = _results(out_dir)["validation_warnings"]
    assert any(check["text"] in n for n in notes), notes
    assert check["text"] in (out_dir / "report.md").read_text(encoding="utf-8")


def _flow(case: dict[str, Any], check: dict[str, Any], out_dir: Path) -> None:
    steps = {s["reason"]: s["n_dropped"] for s in _results(out_dir)["sample_flow"]["steps"]}
    assert steps.get(check["reason"]) == check["n"], steps


CHECKS = {"same_as_ok": _same_as_ok, "decoded": _decoded, "encoding": _encoding,
          "export_share": _export_share, "report_note": _report_note, "flow": _flow}


# ------------------------------------------------------------------ the manifest itself


def test_manifest_covers_every_file_and_forty_inputs() -> None:
    listed = {c["file"] for c in CASES}
    on_disk = {p.name for p in HERE.iterdir() if p.is_file()} - {"cases.toml", "make_inputs.py"}
    specs = {p for p in on_disk if p.endswith(".toml")}
    assert on_disk - specs == listed, (on_disk - specs) ^ listed
    assert len(listed - {"ok.csv"}) >= 40
    for c in CASES:
        assert c["command"] in ("validate", "study") and c["exit"] in (0, 2), c
        assert c.get("what") and c.get("behaviour") and c.get("message"), c
        assert set(c) <= {"file", "what", "command", "spec", "exit", "message", "behaviour",
                          "checks", "known_issue"}, c
        for check in c.get("checks", []):
            assert check["kind"] in CHECKS, check


def test_make_inputs_regenerates_the_same_files(tmp_path: Path) -> None:
    make_inputs = _make_inputs()
    assert make_inputs.main(["make_inputs.py", str(tmp_path)]) == 0
    made = {p.name for p in tmp_path.iterdir()}
    assert made == {p.name for p in HERE.iterdir()} - {"cases.toml", "make_inputs.py", "__pycache__"}
    same = [n for n in made if (tmp_path / n).read_bytes() == (HERE / n).read_bytes()]
    assert "ok.csv" in same and "merged_title_row.xlsx" in same  # byte for byte, zip times fixed


# ------------------------------------------------------------------ a 2 GB file


@pytest.mark.slow
def test_two_gigabyte_file_is_refused_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 2 GB CSV is not read into memory: validate and study stop at once (exit 2) with the
    file's size, the limit and what to do instead; nothing is written."""
    make_inputs = _make_inputs()
    big = tmp_path / "register.csv"
    try:
        size = make_inputs.write_big_csv(big, 2 * 10**9)
        assert big.stat().st_size == size >= 2 * 10**9
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        code, _, err = run_cli(["validate", str(big)], capsys)
        assert code == 2 and "Traceback" not in err
        text = _flat(err)
        assert "the file is 2.0 GB, above the 1.0 GB" in text and "--engine stream" in text, text
        assert "SMESURVIVAL_MAX_FILE_SIZE=3GB" in text, text
        out_dir = tmp_path / "report"
        code, _, err = run_cli(["study", "lee2012", "--data", str(big), "--out", str(out_dir)], capsys)
        assert code == 2 and "above the 1.0 GB" in _flat(err) and not out_dir.exists()
        assert time.perf_counter() - start < 20
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
        assert grown_kib < 200 * 1024, f"peak memory grew by {grown_kib / 1024:.0f} MB"
    finally:
        big.unlink(missing_ok=True)

"""Replication bundles: made on one run, replicated from the zip; tampering is detected."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from smesurvival.data.synthetic import simulate_cohort
from smesurvival.errors import UsageError
from smesurvival.report.build import write_report
from smesurvival.study.bundle import bundle_members, make_bundle, replicate
from smesurvival.study.run import run_study


@pytest.fixture(scope="module")
def firms_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "firms.csv"
    simulate_cohort(800, 5).frame.to_csv(path, index=False)
    return path


def test_synthetic_study_replicates_from_its_bundle(tmp_path: Path) -> None:
    result = run_study("lee2012", robustness=False)
    files = write_report(result, tmp_path / "report", formats=["md"])
    zpath = make_bundle(result, tmp_path / "study.zip", report_dir=files.out_dir, robustness=False)
    names = set(bundle_members(zpath))
    assert {"manifest.json", "spec.json", "spec.toml", "results.json", "report/report.md"} <= names
    manifest = json.loads(zipfile.ZipFile(zpath).read("manifest.json"))
    assert manifest["packages"]["numpy"] and manifest["seeds"]["synthetic"] == 2012
    rep = replicate(zpath)
    assert rep.ok and rep.exit_code == 0 and rep.compared > 300 and not rep.differences


def test_bundled_data_replicate_and_tampering_is_named(tmp_path: Path, firms_csv: Path) -> None:
    result = run_study("lee2012", firms_csv, robustness=False)
    zpath = make_bundle(result, tmp_path / "s.zip", data_file=firms_csv, include_data=True,
                        robustness=False)
    assert "data/firms.csv" in set(bundle_members(zpath))
    assert replicate(zpath).ok
    lines = firms_csv.read_text().splitlines()
    lines[5] = lines[5].replace(",", ",1", 1)  # one changed cell
    bad = tmp_path / "tampered.csv"
    bad.write_text("\n".join(lines) + "\n")
    rep = replicate(zpath, bad)
    assert rep.exit_code == 3 and not rep.data_ok
    assert "data hash mismatch" in rep.data_message and "tampered.csv" in rep.data_message


def test_a_changed_number_is_listed(tmp_path: Path, firms_csv: Path) -> None:
    result = run_study("lee2012", firms_csv, robustness=False)
    zpath = make_bundle(result, tmp_path / "s.zip", robustness=False)
    with pytest.raises(UsageError, match="does not include the data"):
        replicate(zpath)
    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(zpath) as src, zipfile.ZipFile(edited, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "results.json":
                d = json.loads(data)
                d["steps"][1]["fit"]["params"]["export_ratio"] += 1e-6
                data = json.dumps(d).encode()
            dst.writestr(item, data)
    rep = replicate(edited, firms_csv)
    assert rep.exit_code == 3 and rep.data_ok
    assert [d.path for d in rep.differences] == ["steps/1/fit/params/export_ratio"]


def test_bad_bundles(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="not a zip file"):
        replicate(junk)
    with pytest.raises(UsageError, match="must be a .zip"):
        make_bundle(run_study("lee2012", robustness=False), tmp_path / "x.tar")

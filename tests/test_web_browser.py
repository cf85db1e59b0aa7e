"""The dashboard in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium).

The flow of issue 6: open the home page, upload a CSV of 300 synthetic firms, fix a column
mapping, run the reference study, see the verdict table, download the bundle, use the what-if
sliders. The server is the real one (Uvicorn, studies in worker processes). Screenshots of each
page go to tests/artifacts/ (git-ignored). Skipped, with the reason, only when Chromium or
Playwright is missing (``make test`` installs both).
"""

from __future__ import annotations

import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"

if not CHROMIUM.exists():
    pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium "
                "(apt-get install chromium; make test does it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")
pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard on a free loopback port: worker processes, built-in study without bootstrap."""
    import uvicorn

    from smesurvival.web import create_app

    app = create_app(tmp_path_factory.mktemp("browser-data"), executor="process", workers=2,
                     demo_bootstrap=0)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not srv.started:
        if time.monotonic() - t0 > 60 or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def firms_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 synthetic firms on which the reference study runs (no separation), with the
    employees column renamed so that its mapping must be fixed by hand."""
    from smesurvival.data.synthetic import simulate_cohort
    from smesurvival.errors import SeparationError
    from smesurvival.study.run import run_study
    from smesurvival.web.studyform import StudyOptions, build_spec

    _, spec = build_spec(StudyOptions.parse({"bootstrap": 0}))
    for seed in (6, 9, 11, 12, 13, 14, 15, 16, 17, 18):
        frame = simulate_cohort(300, seed).frame
        try:
            run_study(spec, frame, robustness=False)
        except SeparationError:
            continue
        path = tmp_path_factory.mktemp("upload") / "firms300.csv"
        frame.rename(columns={"employees": "staff_total"}).to_csv(path, index=False)
        return path
    raise AssertionError("no 300-firm cohort without separation among the seeds tried")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


def _shot(page: Any, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


def test_the_whole_flow_in_chromium(server: str, browser: Any, firms_csv: Path, tmp_path: Path) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.set_default_timeout(20_000)

    # 1. the home page (the built-in study may still be computing: it runs in the background)
    page.goto(server + "/")
    assert "What keeps small and medium-sized enterprises alive?" in page.content()
    page.click("#new-workspace")
    page.wait_for_url("**/w/*")
    _shot(page, "02-workspace.png")

    # 2. upload 300 synthetic firms: the employees column is not recognised
    page.set_input_files("#file", str(firms_csv))
    page.click("#upload-button")
    page.wait_for_selector("#validation-errors")
    assert "required role &#39;employees&#39;" in page.content() or "required role 'employees'" in page.content()
    assert page.locator("#run-study").is_disabled()
    _shot(page, "03-validation.png")

    # 3. fix the mapping: employees is the column staff_total
    page.select_option("#role-employees", "staff_total")
    page.click("#save-mapping")
    page.wait_for_selector("#validation-ok")
    assert page.locator("#run-study").is_enabled()
    _shot(page, "04-mapping-fixed.png")

    # 4. run the reference study (bootstrap off, to keep the test short)
    page.select_option("select[name=bootstrap]", "0")
    page.click("#run-study")
    page.wait_for_url("**/r/*")
    if page.locator("progress").count():
        _shot(page, "05-progress.png")
    page.wait_for_selector("#verdict-table", timeout=300_000)  # the page reloads when done

    # 5. the verdict table
    rows = page.locator("#verdict-table tbody tr")
    assert rows.count() == 7
    assert page.locator("#verdict-table tbody tr th").all_inner_texts() == ["H1", "H2a", "H2b", "H3a", "H3b", "H4", "H5"]
    assert page.locator("#figures img").count() >= 5
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    _shot(page, "06-results.png", full_page=False)
    _shot(page, "06-results-full.png")

    # 6. download the bundle
    with page.expect_download() as info:
        page.click("#download-bundle")
    target = tmp_path / "bundle.zip"
    info.value.save_as(str(target))
    names = set(zipfile.ZipFile(target).namelist())
    for n in ("report.html", "report.md", "results.json", "tables.docx", "tables.tex",
              "tables/verdicts.csv", "figures/interaction.png"):
        assert n in names, n

    # 7. the what-if: sliders move the prediction
    page.click("#whatif-link")
    page.wait_for_selector("#export-chart svg")
    page.wait_for_selector("#cox-chart svg")
    assert "associations" in page.locator("#caveat").inner_text()
    before = page.locator("#p-survive").inner_text()
    updated = page.locator("#whatif-form").get_attribute("data-updated")
    page.locator("#in-export_ratio").fill("0.6")
    page.wait_for_function("(u) => document.querySelector('#whatif-form').getAttribute('data-updated') !== u",
                           arg=updated)
    after = page.locator("#p-survive").inner_text()
    assert after != before and after.endswith("%")
    assert page.locator("#out-export_ratio").inner_text() == "0.6"
    updated = page.locator("#whatif-form").get_attribute("data-updated")
    page.select_option("#in-rd_alliance", "1")
    page.wait_for_function("(u) => document.querySelector('#whatif-form').getAttribute('data-updated') !== u",
                           arg=updated)
    assert page.locator("#p-survive").inner_text() == page.locator("#p-with").inner_text()
    _shot(page, "07-whatif.png")

    # 8. the home page again, with the built-in study complete
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        page.goto(server + "/")
        if page.locator("#verdict-table").count():
            break
        time.sleep(1.0)
    assert "SYNTHETIC DATA" in page.content()
    assert page.locator("#verdict-table tbody tr").count() == 7
    _shot(page, "01-home.png")
    page.click("text=What-if for one firm")  # the built-in study's what-if, labelled SYNTHETIC
    page.wait_for_selector("#cox-chart svg")
    assert "SYNTHETIC DATA" in page.content()
    _shot(page, "08-whatif-builtin.png")
    assert problems == [], problems  # no script errors, no CSP violations
    ctx.close()
    for name in ("01-home.png", "03-validation.png", "06-results.png", "07-whatif.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000, name


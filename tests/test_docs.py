"""Every code block in docs/*.md runs: ```python blocks in order in one namespace per file,
```sh blocks line by line through the CLI (in-process; exit status 0), all in a scratch folder.
Untagged fences hold output or text and are not run."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from conftest import run_cli

DOCS = sorted((Path(__file__).parent.parent / "docs").glob("*.md"))
FENCE = re.compile(r"^```([A-Za-z]*)[^\n]*\n(.*?)^```", re.S | re.M)
RUN = {"python", "sh"}
SHOWN = {"", "text", "toml", "json", "console"}  # shown, not run


def blocks(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1).lower(), m.group(2)) for m in FENCE.finditer(path.read_text("utf-8"))]


def _commands(block: str) -> list[list[str]]:
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(shlex.split(line))
    return out


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_doc_code_blocks_run(doc: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    found = blocks(doc)
    unknown = {lang for lang, _ in found} - RUN - SHOWN
    assert not unknown, f"{doc.name}: code blocks in {unknown} cannot be run; tag them python or sh"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ns: dict[str, object] = {"__name__": f"doc_{doc.stem}"}
    for i, (lang, code) in enumerate(found):
        if lang == "python":
            exec(compile(code, f"{doc.name}[block {i + 1}]", "exec"), ns)  # noqa: S102
        elif lang == "sh":
            for argv in _commands(code):
                assert argv[0] == "smesurvival", f"{doc.name}: sh blocks run smesurvival commands"
                code_, out, err = run_cli(argv[1:], capsys)
                assert code_ == 0, f"{doc.name}: `{' '.join(argv)}` exited {code_}: {err[-2000:]}"
    assert os.getcwd() == str(tmp_path)

"""What an uploaded file is, judged from its bytes, never from its name.

:func:`sniff` looks at the first bytes (and, for ZIP files, the member names) and returns the
extension the readers expect (``.csv``, ``.xlsx``, ``.parquet``, ``.dta``, ``.sav``), or raises
:class:`~smesurvival.errors.DataReadError` saying what the file seems to be instead.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from smesurvival.errors import DataReadError

ACCEPTED = "CSV (or other delimited text), Excel .xlsx, Stata .dta, SPSS .sav or Parquet"

#: Magic numbers of common files that are not data sets (for a helpful message).
_OTHER = (
    (b"\x89PNG\r\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"), (b"%PDF-", "a PDF document"), (b"\x7fELF", "a Linux executable"),
    (b"MZ\x90\x00", "a Windows executable"), (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"), (b"Rar!\x1a\x07", "a RAR archive"), (b"\xd0\xcf\x11\xe0", "an old Office file (.xls/.doc); save it as .xlsx or CSV"),
    (b"SQLite format 3", "an SQLite database"), (b"\x00\x00\x00", "a binary file"),
)
_TEXT_PROBE = 1 << 16


def sniff(path: Path) -> str:
    """The data format of the file at ``path`` as a reader extension (content-based)."""
    with open(path, "rb") as fh:
        head = fh.read(_TEXT_PROBE)
    if not head:
        raise DataReadError("the uploaded file is empty (0 bytes)")
    if head.startswith(b"PAR1"):
        return ".parquet"
    if head.startswith(b"$FL2") or head.startswith(b"$FL3"):
        return ".sav"
    if head.startswith(b"<stata_dta>") or _old_stata(head):
        return ".dta"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    for magic, what in _OTHER:
        if head.startswith(magic):
            raise DataReadError(f"the uploaded file is {what}, not a data set; upload {ACCEPTED}")
    if _is_text(head):
        return ".csv"
    raise DataReadError(f"the uploaded file is binary data of an unknown kind; upload {ACCEPTED}")


def _old_stata(head: bytes) -> bool:
    """Stata 8–12 (.dta formats 113–115): release byte, byte order 1 or 2, file type 1."""
    return len(head) >= 4 and head[0] in (113, 114, 115) and head[1] in (1, 2) and head[2] == 1


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile:
        raise DataReadError(f"the uploaded file looks like a ZIP archive but is damaged; upload {ACCEPTED}") from None
    if "[Content_Types].xml" in names and any(n.startswith("xl/") for n in names):
        return ".xlsx"
    if any(n.startswith("word/") for n in names):
        raise DataReadError(f"the uploaded file is a Word document, not a data set; upload {ACCEPTED}")
    raise DataReadError(f"the uploaded file is a ZIP archive, not a data set; upload {ACCEPTED} (unzipped)")


def _is_text(head: bytes) -> bool:
    """Delimited text: no NUL bytes, decodes as UTF-8 (or a legacy 8-bit code page), mostly printable."""
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start >= len(head) - 4:  # a multi-byte character cut by the probe
            text = head[: e.start].decode("utf-8")
        else:
            text = head.decode("cp1252", errors="replace")
    if not text.strip():
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable / len(text) > 0.97

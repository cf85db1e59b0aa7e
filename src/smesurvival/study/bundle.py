"""Replication bundles: one zip with everything needed to rerun a study and check every number.

``make_bundle`` writes the spec (as parsed, and its TOML text when there is one), the data
file's SHA-256 (and the data itself with ``include_data``), the Python, package and dependency
versions, the seeds, ``results.json`` and the report. ``replicate`` reruns the study from the
bundle (on the bundled data, on ``data`` given again, or -- for the synthetic cohort -- on the
cohort regenerated from its seed), checks the data hash first, and compares every number of the
new results.json with the bundle's within a tolerance; the CLI exits 0 when all match and 3
when any differs or the data are not the bundle's.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from smesurvival.errors import UsageError
from smesurvival.report.serialize import result_to_dict
from smesurvival.study.result import StudyResult
from smesurvival.study.spec import StudySpec, spec_from_dict

FORMAT = "smesurvival-replication-bundle"
VERSION = 1
#: Packages whose versions are recorded (the numerics and the readers).
PACKAGES = ("smesurvival", "numpy", "scipy", "pandas", "pyarrow", "formulaic", "duckdb",
            "matplotlib", "openpyxl", "pyreadstat")
#: results.json entries that name where things ran, not what was computed.
VOLATILE = frozenset({("provenance", "source"), ("provenance", "smesurvival_version"),
                      ("spec", "source"), ("spec", "data_path"), ("label",)})


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def _spec_toml(spec: StudySpec) -> str | None:
    """The spec file's text, when the spec came from a file or is built in."""
    src = Path(spec.source)
    if src.is_file():
        return src.read_text(encoding="utf-8")
    from importlib import resources

    name = spec.source.removesuffix(" (built-in)")
    builtin = resources.files("smesurvival.study").joinpath(f"{name}.toml")
    return builtin.read_text("utf-8") if builtin.is_file() else None


def _seeds(spec: StudySpec) -> dict[str, int | None]:
    return {
        "synthetic": spec.synthetic_seed,
        "effects": spec.effects.seed if spec.effects is not None else None,
        "mediation": spec.mediation.seed if spec.mediation is not None else None,
        "missing": spec.missing.seed if spec.missing is not None else None,
    }


def make_bundle(result: StudyResult, path: Path | str, *, data_file: Path | str | None = None,
                include_data: bool = False, report_dir: Path | str | None = None,
                robustness: bool = True, missing: str | None = None) -> Path:
    """Write the replication bundle ``path`` (a .zip) for ``result``; atomic (temp file, rename).

    ``data_file`` is the file the study read (needed for ``include_data``; its SHA-256 is the
    one in the result's provenance); ``report_dir`` a folder written by ``write_report``;
    ``robustness`` and ``missing`` the :func:`run_study` options the result was made with (the
    rerun uses them)."""
    out = Path(path).expanduser().absolute()
    if out.suffix.lower() != ".zip":
        raise UsageError(f"the bundle must be a .zip file; got '{out.name}'")
    prov = result.provenance
    if include_data and data_file is None:
        if prov.synthetic:
            raise UsageError("--include-data: the synthetic cohort is regenerated from its seed; "
                             "there is no data file to include")
        raise UsageError("--include-data needs the data file (--data FILE)")
    spec = result.spec
    manifest = {
        "format": FORMAT, "version": VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0], "platform": platform.platform(),
        "packages": _versions(),
        "data": {"source": prov.source, "sha256": prov.sha256, "n_rows": prov.n_rows,
                 "synthetic": prov.synthetic,
                 "file": f"data/{Path(data_file).name}" if include_data and data_file else None},
        "seeds": _seeds(spec),
        "run_study": {"robustness": robustness, "missing": missing},
        "study": result.study,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
            z.writestr("spec.json", json.dumps(spec.raw, indent=2, default=str) + "\n")
            toml = _spec_toml(spec)
            if toml is not None:
                z.writestr("spec.toml", toml)
            z.writestr("results.json", json.dumps(result_to_dict(result), indent=2,
                                                  allow_nan=False) + "\n")
            if include_data and data_file is not None:
                z.write(data_file, manifest["data"]["file"])  # type: ignore[index]
            if report_dir is not None:
                root = Path(report_dir)
                for f in sorted(root.rglob("*")):
                    if f.is_file():
                        z.write(f, f"report/{f.relative_to(root).as_posix()}")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


@dataclass(frozen=True)
class Difference:
    """One number (or value) that did not replicate, at a JSON path of results.json."""

    path: str
    bundled: Any
    rerun: Any

    def __str__(self) -> str:
        return f"{self.path}: bundle {self.bundled!r}, rerun {self.rerun!r}"


@dataclass(frozen=True)
class Replication:
    """The outcome of :func:`replicate`."""

    bundle: Path
    data_ok: bool
    data_message: str
    compared: int  # numbers compared
    differences: tuple[Difference, ...]
    rtol: float
    atol: float

    @property
    def ok(self) -> bool:
        return self.data_ok and not self.differences

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 3


def _read(z: zipfile.ZipFile, name: str) -> Any:
    try:
        return json.loads(z.read(name))
    except KeyError:
        raise UsageError(f"{z.filename}: not a replication bundle (no {name})") from None


def replicate(bundle: Path | str, data: Path | str | None = None, *, rtol: float = 1e-9,
              atol: float = 1e-12) -> Replication:
    """Rerun the bundled study and compare every number of results.json."""
    from smesurvival.data.readers import file_sha256
    from smesurvival.study.run import run_study

    path = Path(bundle).expanduser()
    if not path.is_file():
        raise UsageError(f"bundle '{path}' does not exist")
    try:
        z = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise UsageError(f"{path}: not a zip file (a replication bundle is a .zip)") from None
    with z, tempfile.TemporaryDirectory(prefix="smesurvival-replicate-") as tmpdir:
        manifest = _read(z, "manifest.json")
        if manifest.get("format") != FORMAT:
            raise UsageError(f"{path}: not a replication bundle (manifest format "
                             f"{manifest.get('format')!r})")
        raw = _read(z, "spec.json")
        bundled = _read(z, "results.json")
        spec = spec_from_dict(raw, f"{path.name}:spec.json")
        info = manifest["data"]
        source: Path | None
        if data is not None:
            source = Path(data).expanduser()
            if not source.is_file():
                raise UsageError(f"data file '{source}' does not exist")
        elif info.get("file"):
            source = Path(z.extract(info["file"], tmpdir))
        elif info.get("synthetic"):
            source = None  # regenerated from the spec's seed
        else:
            raise UsageError(f"{path}: the bundle does not include the data (made without "
                             "--include-data); pass the data file with --data FILE")
        if source is not None:
            sha = file_sha256(source)
            if sha != info.get("sha256"):
                msg = (f"data hash mismatch: {source} has SHA-256 {sha}, the bundle's data had "
                       f"{info.get('sha256')} — these are not the data the study was run on")
                return Replication(path, False, msg, 0, (), rtol, atol)
        opts = manifest.get("run_study", {})
        result = run_study(spec, source, robustness=bool(opts.get("robustness", True)),
                           missing=opts.get("missing"))
        if source is None and result.provenance.sha256 != info.get("sha256"):
            msg = (f"data hash mismatch: the regenerated synthetic cohort has SHA-256 "
                   f"{result.provenance.sha256}, the bundle's had {info.get('sha256')} (a "
                   "different simulator version)")
            return Replication(path, False, msg, 0, (), rtol, atol)
        rerun = json.loads(json.dumps(result_to_dict(result), allow_nan=False))
        diffs: list[Difference] = []
        compared = _compare(bundled, rerun, (), diffs, rtol, atol)
        return Replication(path, True, "data SHA-256 matches the bundle", compared,
                           tuple(diffs), rtol, atol)


def _compare(a: Any, b: Any, where: tuple[str, ...], out: list[Difference], rtol: float,
             atol: float) -> int:
    """Walk two JSON values; record differences; return the number of numbers compared."""
    if where[:2] in VOLATILE or where[-1:] == ("raw",) and where[:1] == ("spec",):
        return 0
    name = _path(where)
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
        if a != b:
            out.append(Difference(name, a, b))
        return 0
    if isinstance(a, int | float) and isinstance(b, int | float):
        if abs(a - b) > atol + rtol * abs(a):
            out.append(Difference(name, a, b))
        return 1
    if isinstance(a, dict) and isinstance(b, dict):
        n = 0
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(Difference(_path((*where, k)), a.get(k, "<absent>"), b.get(k, "<absent>")))
                continue
            n += _compare(a[k], b[k], (*where, k), out, rtol, atol)
        return n
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(Difference(name, f"{len(a)} entries", f"{len(b)} entries"))
            return 0
        return sum(_compare(x, y, (*where, str(i)), out, rtol, atol)
                   for i, (x, y) in enumerate(zip(a, b, strict=True)))
    if a != b:
        out.append(Difference(name, a, b))
    return 0


def _path(where: tuple[str, ...]) -> str:
    return "/".join(where) or "/"


def bundle_members(bundle: Path | str) -> Iterator[str]:
    """Names of the files in a bundle (for listings and tests)."""
    with zipfile.ZipFile(bundle) as z:
        yield from z.namelist()

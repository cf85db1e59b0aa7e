"""Shared fixtures: reference data (R results copied from ../shared/reference) and generated data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REF = Path(__file__).parent / "reference"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    import sys

    from smesurvival.cli import main

    old = sys.argv
    sys.argv = ["smesurvival", *argv]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.argv = old
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def load_ref(case: str) -> dict:
    """A reference case's JSON (see tests/reference/README.md for how it was computed)."""
    return json.loads((REF / f"{case}.json").read_text())


def r_name(term: str) -> str:
    """Our term name -> R's ('Intercept' -> '(Intercept)')."""
    return "(Intercept)" if term == "Intercept" else term


@pytest.fixture(scope="session")
def mroz() -> pd.DataFrame:
    d = pd.read_csv(REF / "data" / "carData_Mroz.csv")
    d["lfp"] = (d["lfp"] == "yes").astype(int)
    d["wcyes"] = (d["wc"] == "yes").astype(int)
    d["hcyes"] = (d["hc"] == "yes").astype(int)
    return d


@pytest.fixture(scope="session")
def rossi() -> pd.DataFrame:
    d = pd.read_csv(REF / "data" / "carData_Rossi.csv")
    return pd.DataFrame({
        "week": d["week"], "arrest": d["arrest"], "finyes": (d["fin"] == "yes").astype(int),
        "age": d["age"], "raceother": (d["race"] == "other").astype(int),
        "wexpyes": (d["wexp"] == "yes").astype(int),
        "marnotmarried": (d["mar"] == "not married").astype(int),
        "paroyes": (d["paro"] == "yes").astype(int), "prio": d["prio"],
    })


@pytest.fixture(scope="session")
def binary_data() -> pd.DataFrame:
    """Generated data with a continuous x binary interaction, a factor and 40 clusters."""
    rng = np.random.default_rng(42)
    n = 3000
    x = rng.normal(size=n)
    z = rng.binomial(1, 0.4, size=n)
    g = rng.choice(["a", "b", "c"], size=n)
    cl = rng.integers(0, 40, size=n)
    u = rng.normal(scale=0.5, size=40)[cl]
    eta = -0.3 + 0.8 * x - 0.5 * z + 0.4 * x * z + np.where(g == "b", 0.3, 0) + u
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    w = rng.integers(1, 4, size=n).astype(float)
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g, "cl": cl, "w": w})

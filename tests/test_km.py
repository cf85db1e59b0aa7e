"""Kaplan–Meier against R's survfit on carData::Rossi (tests/reference/km_rossi.json)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import load_ref
from smesurvival.models.km import kaplan_meier


@pytest.mark.parametrize("group,level", [("fin_no", 0), ("fin_yes", 1), ("overall", None)])
def test_km_matches_survfit(rossi: pd.DataFrame, group: str, level: int | None) -> None:
    ref = load_ref("km_rossi")["km"]
    if group not in ref:
        pytest.skip(f"reference has no {group}")
    want = ref[group]["at_times"]
    sub = rossi if level is None else rossi[rossi.finyes == level]
    km = kaplan_meier(sub.week.to_numpy(), sub.arrest.to_numpy())
    idx = [np.searchsorted(km.time, t, side="right") - 1 for t in want["time"]]
    np.testing.assert_allclose(km.survival[idx], want["surv"], rtol=1e-10)
    np.testing.assert_allclose(km.std_err[idx], want["std_err"], rtol=1e-8)
    np.testing.assert_allclose(km.conf_low[idx], want["lower_95"], rtol=1e-8)
    np.testing.assert_allclose(km.conf_high[idx], want["upper_95"], rtol=1e-8)
    for t, s in zip(want["time"], want["surv"], strict=True):
        assert km.at(t) == pytest.approx(s, rel=1e-12)
    assert km.at(0.5) == 1.0


def test_weights_equal_replication() -> None:
    t = np.array([1.0, 2, 2, 3, 4, 5])
    e = np.array([1, 0, 1, 1, 0, 1])
    w = np.array([2.0, 1, 3, 1, 2, 1])
    a = kaplan_meier(t, e, w)
    b = kaplan_meier(np.repeat(t, w.astype(int)), np.repeat(e, w.astype(int)))
    np.testing.assert_allclose(a.survival, b.survival)
    np.testing.assert_allclose(a.std_err, b.std_err)

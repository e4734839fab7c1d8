"""Scoring with a fitted model, without a trained workspace: the fast logistic path against
scikit-learn's own pipeline, the calibrator, and the model rank's ties."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.predict import NOT_SCORED, _isotonic, _log_odds, add_rank_and_band
from models.train import make_estimator


def _fitted(seed: int):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 5)).astype(np.float32) * np.array([1, 10, 100, 0.1, 3], dtype=np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan  # every input has missing values, so every one is flagged
    y = (np.nan_to_num(x[:, 0]) + rng.normal(size=400) > 0).astype(int)
    pipeline = make_estimator("logistic", seed).fit(x[:200], y[:200])
    calibrated = CalibratedClassifierCV(FrozenEstimator(pipeline), method="isotonic").fit(x[200:], y[200:])
    return pipeline, calibrated, x


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_fast_log_odds_are_the_pipelines_own(seed):
    pipeline, calibrated, x = _fitted(seed)
    expected = pipeline.decision_function(x.astype(np.float64))
    for matrix in (x, np.asfortranarray(x)):  # row or column order, the same figures
        assert np.allclose(_log_odds(pipeline, matrix), expected, rtol=0, atol=1e-9)
    # the calibrator applied as scikit-learn applies it
    (fitted,) = calibrated.calibrated_classifiers_
    iso = fitted.calibrators[0]
    assert np.allclose(_isotonic(iso, expected), np.clip(iso.predict(expected), 0, 1), rtol=0, atol=1e-6)
    assert np.allclose(_isotonic(iso, expected), calibrated.predict_proba(x.astype(np.float64))[:, 1], rtol=0,
                       atol=1e-6)


def test_model_rank_is_by_probability_with_ties_in_the_rules_order():
    frame = pl.DataFrame({
        "person_key": ["P-z", "P-y", "P-x", "P-w", "P-v"],
        "eligible": [True, True, False, True, True],
        "rank": [1, 2, None, 3, 4],
        "model_probability": [0.2, 0.5, None, 0.2, 0.9],
    })
    out = add_rank_and_band(frame)
    # P-z and P-w tie on 0.2: the rules rank P-z (1) before P-w (3), whatever their keys
    assert out["model_rank"].to_list() == [3, 2, None, 4, 1]
    assert out["model_band"].to_list() == ["moderate (10-24%)", "very high (50%+)", NOT_SCORED,
                                           "moderate (10-24%)", "very high (50%+)"]


@pytest.mark.parametrize("eligible", [[False, False], [True, False]])
def test_model_rank_with_few_or_no_eligible(eligible):
    frame = pl.DataFrame({"person_key": ["a", "b"], "eligible": eligible,
                          "rank": [1 if e else None for e in eligible],
                          "model_probability": [0.3 if e else None for e in eligible]})
    out = add_rank_and_band(frame)
    assert out["model_rank"].to_list() == [1 if e else None for e in eligible]


def test_the_derived_inputs_of_one_person_with_no_probation_or_custody_record():
    """`iom explain` builds a one-row frame from a person's row: a missing RoSH or supervision reads
    as a column of no type, which the derived inputs must take as missing, not fail on."""
    from models.dataset import with_derived

    row = with_derived(pl.DataFrame([{"rosh": None, "supervision_type": None, "custody_type_at_d": None}])).row(
        0, named=True)
    assert row["rosh_level"] is None
    assert not any(v for k, v in row.items() if k.startswith(("supervision_", "custody_")) and k != "supervision_type"
                   and k != "custody_type_at_d")
    high = with_derived(pl.DataFrame([{"rosh": "high", "supervision_type": "licence", "custody_type_at_d": None}]))
    assert high["rosh_level"][0] == 3 and high["supervision_licence"][0]

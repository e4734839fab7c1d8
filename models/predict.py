"""Scoring with a registered model at the as-of date, and explaining one person's probability.

`model_probability` is the calibrated probability of the model's target (default: any counted
offence) within its horizon, for every eligible person (the population the model is trained
and calibrated on; the others have none, and the band NOT_SCORED); `model_band` is its band
(PROBABILITY_BANDS) and `model_rank` the rank among the eligible by it (ties by the rules' rank).
The model is advisory: it moves nobody unless the rule set declares a blend (`[model_blend]`,
rules/schema.py), which adds round(points x probability) as the component `model`, with a
reason, before selection.

Contributions (`contributions`), the features that pushed a probability up or down:

- logistic regression: coefficient x standardised value (missing-value flags added to their
  feature), in log-odds against the average fitted person; their sum plus the intercept is the
  uncalibrated log-odds, which calibration maps monotonically to the probability;
- other models (gradient boosting): for each feature, the fitted model's probability minus its
  probability with that one feature set to its median on the fit people (the reference), in
  percentage points; a SHAP-free approximation that ignores interactions between features.
  Measured before calibration: isotonic calibration is monotone, so the direction holds, but
  it is flat over ranges and would hide most single-feature changes.

`disagreement` lists where the two views part: high on the rules (top
`[model] disagreement_top_percent` of the eligible by rank) but low on the model (below the
median of its ranking), and the reverse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from models.dataset import input_columns, model_matrix, with_derived

# (lowest probability, label): each band runs to the next one's lowest.
PROBABILITY_BANDS: tuple[tuple[float, str], ...] = (
    (0.0, "low (under 10%)"), (0.10, "moderate (10-24%)"), (0.25, "high (25-49%)"), (0.50, "very high (50%+)"),
)
MODEL_COLUMNS = ("model_probability", "model_band", "model_rank")
# The band of a person the model does not score: it is trained and calibrated on the eligible
# (those the rules could propose), and says nothing calibrated about anyone else.
NOT_SCORED = "not scored (not eligible)"
DISAGREEMENT_COLUMNS = ("kind", "person_key", "area", "rank", "score", "priority", "super_prolific", "model_rank",
                        "model_probability", "model_band", "eligible_people")


def probabilities(artefact: dict, features: pl.DataFrame) -> np.ndarray:
    """The calibrated probability per row of a features frame (`compute_features` columns).

    For the logistic model the log-odds are computed here (`_log_odds`: the same arithmetic as
    its scikit-learn pipeline, the scaling folded into the weights, a column at a time; checked
    equal by a test) and handed to its fitted calibrator: the pipeline's imputer and scaler each
    make a fresh matrix, which dominated the model's cost at 1M people. (One Polars expression
    over the frame's columns was measured slower.)"""
    if features.height == 0:
        return np.zeros(0)
    if artefact["kind"] == "logistic":
        log_odds = _log_odds(artefact["base"], model_matrix(with_derived(features), artefact["features"], "fortran"))
        (calibrated,) = artefact["estimator"].calibrated_classifiers_
        return _isotonic(calibrated.calibrators[0], log_odds)
    return artefact["estimator"].predict_proba(model_matrix(with_derived(features), artefact["features"]))[:, 1]


def _isotonic(calibrator, values: np.ndarray) -> np.ndarray:
    """A fitted calibrator's prediction: for isotonic regression its own interpolation between
    its thresholds (values cast to their dtype and clipped to their range, as it does), without
    its input checks; a sigmoid calibrator predicts as it is."""
    if not hasattr(calibrator, "X_thresholds_"):
        return np.clip(calibrator.predict(values).astype(np.float64), 0.0, 1.0)
    thresholds = calibrator.X_thresholds_
    inputs = values.astype(thresholds.dtype)
    out = np.interp(inputs, thresholds, calibrator.y_thresholds_).astype(inputs.dtype)
    return np.clip(out.astype(np.float64), 0.0, 1.0)


def band_expr(probability: pl.Expr) -> pl.Expr:
    """The band of a probability; a missing one (a person the model did not score) has NOT_SCORED."""
    expr = pl.when(probability.is_null()).then(pl.lit(NOT_SCORED))
    for lowest, label in reversed(PROBABILITY_BANDS):
        expr = expr.when(probability >= lowest).then(pl.lit(label))
    return expr.otherwise(pl.lit(PROBABILITY_BANDS[0][1]))


def add_probability(scored: pl.DataFrame, artefact: dict, blend: dict | None = None) -> pl.DataFrame:
    """`scored` (rules.score.score's frame) with model_probability for the eligible (null for
    the others, whom the model was neither trained nor calibrated on); with a blend, the points
    of the component `model` added to the score and its reason to the reasons.

    Only the input columns of the eligible rows are read (no second feature pass and no copy of
    the frame), and the probabilities are put back in the frame's row order."""
    eligible = scored.get_column("eligible").fill_null(False).to_numpy()
    inputs = scored.select(*input_columns(artefact["features"]), pl.col("eligible").fill_null(False))
    values = np.full(scored.height, np.nan)
    values[eligible] = probabilities(artefact, inputs.filter(pl.col("eligible")))
    frame = scored.with_columns(pl.Series("model_probability", values, dtype=pl.Float64).fill_nan(None))
    if not blend:
        return frame
    points = (pl.col("model_probability") * blend["points"]).round(0).cast(pl.Int64)
    percent = (pl.col("model_probability") * 100).round(0).cast(pl.Int64).cast(pl.Utf8)
    reason = pl.lit(blend["reason"].split("{value}")[0]) + percent + pl.lit(
        blend["reason"].split("{value}")[1] if "{value}" in blend["reason"] else "")
    reason = pl.when(points > 0).then(reason + pl.lit(" (+") + points.cast(pl.Utf8) + pl.lit(")")).otherwise(None)
    with_points = frame.with_columns(pl.when(pl.col("eligible")).then(points).otherwise(0).alias("points_model"))
    return with_points.with_columns(
        (pl.col("score") + pl.col("points_model")).alias("score"),
        pl.when(pl.col("eligible") & reason.is_not_null())
        .then(pl.concat_str([pl.col("reasons"), reason], separator="\n", ignore_nulls=True))
        .otherwise(pl.col("reasons")).alias("reasons"),
    )


def add_rank_and_band(ranked: pl.DataFrame) -> pl.DataFrame:
    """model_band for everyone, model_rank among the eligible: highest probability first, ties
    by the rules' rank (the calibrated probability takes a few hundred values, so ties are
    common; breaking them by the rules' order means nobody is placed below the model's median,
    and so in the disagreement list, by where their person key falls in the alphabet; it is
    also two numeric keys, not a sort on the person key). The ineligible have none."""
    eligible = np.flatnonzero(ranked.get_column("eligible").fill_null(False).to_numpy())
    probability = ranked.get_column("model_probability").to_numpy()[eligible]
    rules_rank = ranked.get_column("rank").to_numpy()[eligible]
    order = eligible[np.lexsort((rules_rank, -probability))]
    rank = np.zeros(ranked.height, dtype=np.int64)
    rank[order] = np.arange(1, order.size + 1)
    return ranked.with_columns(
        band_expr(pl.col("model_probability")).alias("model_band"),
        pl.when(pl.lit(pl.Series(rank)) > 0).then(pl.lit(pl.Series(rank))).otherwise(None).alias("model_rank"),
    )


def disagreement(ranked: pl.DataFrame, top_percent: float) -> pl.DataFrame:
    """[one eligible person ranked high by one view and low by the other]: kind
    'rules_high_model_low' or 'model_high_rules_low', ordered by how far apart the ranks are."""
    eligible = ranked.filter(pl.col("eligible"))
    n = eligible.height
    if n == 0:
        return pl.DataFrame(schema={c: pl.Utf8 for c in DISAGREEMENT_COLUMNS})
    top = max(1, int(np.ceil(n * top_percent / 100)))
    low = n / 2
    rules_high = eligible.filter((pl.col("rank") <= top) & (pl.col("model_rank") > low))
    model_high = eligible.filter((pl.col("model_rank") <= top) & (pl.col("rank") > low))
    parts = [frame.with_columns(pl.lit(kind).alias("kind"), (pl.col("rank") - pl.col("model_rank")).abs().alias("_gap"))
             for kind, frame in (("rules_high_model_low", rules_high), ("model_high_rules_low", model_high))]
    return (pl.concat(parts).sort(["kind", "_gap", "person_key"], descending=[True, True, False])
            .with_columns(pl.lit(n).alias("eligible_people")).select(DISAGREEMENT_COLUMNS))


# --- contributions --------------------------------------------------------------------------


def _logistic_parts(pipeline, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(coefficient per column of the transformed inputs, feature index of each column): the
    inputs, then a missing-value flag for each input that had missing values when fitted."""
    imputer = pipeline.named_steps["impute"]
    coef = pipeline.named_steps["model"].coef_[0]
    owners = list(range(n_features))
    if imputer.indicator_ is not None:
        owners += list(imputer.indicator_.features_)
    return coef, np.array(owners)


def _log_odds(pipeline, x: np.ndarray) -> np.ndarray:
    """The logistic pipeline's log-odds from an input matrix (best in column order, as
    `probabilities` makes it), with the scaling folded into the weights: one pass per input
    column, a missing value replaced by its median and flagged, in float64 (no matrix copy)."""
    weights, offset, medians, flagged = _folded(pipeline, x.shape[1])
    n = x.shape[1]
    flag_weight = dict(zip(flagged.tolist(), weights[n:].tolist(), strict=True))
    result = np.full(x.shape[0], offset)
    for j in range(n):
        column = x[:, j]
        missing = np.isnan(column)
        if missing.any():
            column = np.where(missing, medians[j], column)
            if j in flag_weight:
                result += flag_weight[j] * missing
        result += weights[j] * column
    return result


def _folded(pipeline, n_features: int) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """(weight per transformed column, offset, median per input, inputs with a missing-value
    flag) of the logistic pipeline, the scaling folded into the weights, all in float64: the
    fitted coefficients are float32 (fitted on float32 inputs), and NumPy keeps a float32
    scalar minus a Python float in float32, which once moved the log-odds by up to 2e-7 against
    the pipeline's own arithmetic (and the isotonic calibrator, steep between close thresholds,
    turned that into visible probability differences)."""
    imputer, scaler = pipeline.named_steps["impute"], pipeline.named_steps["scale"]
    coef, _ = _logistic_parts(pipeline, n_features)
    weights = coef.astype(np.float64) / scaler.scale_
    offset = float(pipeline.named_steps["model"].intercept_[0]) - float(scaler.mean_ @ weights)
    flagged = imputer.indicator_.features_ if imputer.indicator_ is not None else np.zeros(0, dtype=int)
    return weights, offset, imputer.statistics_.astype(np.float64), np.asarray(flagged, dtype=int)


def _linear_terms(pipeline, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(standardised inputs with their missing-value flags, coefficients, owning feature per
    column) of the logistic pipeline: median imputation, flags, scaling, as its fitted steps say."""
    imputer, scaler = pipeline.named_steps["impute"], pipeline.named_steps["scale"]
    missing = np.isnan(x)
    filled = np.where(missing, imputer.statistics_.astype(x.dtype), x)
    if imputer.indicator_ is not None:
        filled = np.hstack([filled, missing[:, imputer.indicator_.features_].astype(x.dtype)])
    z = (filled - scaler.mean_) / scaler.scale_
    coef, owners = _logistic_parts(pipeline, x.shape[1])
    return z, coef, owners


def linear_weights(pipeline, features: Sequence[str]) -> list[tuple[str, float]]:
    """Each feature's coefficient per standard deviation (the model card's table)."""
    coef, _ = _logistic_parts(pipeline, len(features))
    return [(f, float(coef[i])) for i, f in enumerate(features)]


def contributions(artefact: dict, features: pl.DataFrame) -> np.ndarray:
    """Per row and input, how much it pushed the probability (see the module docstring for the
    units: log-odds for the logistic model, percentage points otherwise)."""
    names = artefact["features"]
    x = model_matrix(with_derived(features), names).astype(np.float64)
    if artefact["kind"] == "logistic":
        z, coef, owners = _linear_terms(artefact["base"], x)
        per_column = z * coef
        result = np.zeros((x.shape[0], len(names)))
        np.add.at(result.T, owners, per_column.T)
        return result
    estimator = artefact["base"]  # before calibration, which is monotone but flat over ranges
    reference = np.array([np.nan if artefact["reference"][f] is None else artefact["reference"][f] for f in names])
    base = estimator.predict_proba(x)[:, 1]
    result = np.zeros((x.shape[0], len(names)))
    for j in range(len(names)):  # one prediction per input, over all rows at once
        changed = x.copy()
        changed[:, j] = reference[j]
        result[:, j] = (base - estimator.predict_proba(changed)[:, 1]) * 100
    return result


def explain_row(artefact: dict, row: dict, top: int = 5) -> dict:
    """One person's probability and the inputs that pushed it up and down most."""
    frame = pl.DataFrame([row], infer_schema_length=None)
    values = contributions(artefact, frame)[0]
    derived = with_derived(frame).row(0, named=True)
    names = artefact["features"]
    unit = "log-odds" if artefact["kind"] == "logistic" else "percentage points"
    items = sorted(((names[j], derived.get(names[j]), float(values[j])) for j in range(len(names))),
                   key=lambda item: -abs(item[2]))
    return {
        "probability": float(probabilities(artefact, frame)[0]), "unit": unit, "kind": artefact["kind"],
        "up": [i for i in items if i[2] > 0][:top], "down": [i for i in items if i[2] < 0][:top],
    }

"""Fairness monitoring by ethnicity, sex and age band (fairlearn's MetricFrame).

These characteristics are read here, for monitoring only: no score, rule or model reads them.

- In a run (`run_fairness`): among the eligible, each group's size, how many were selected
  for the priority cohort, its selection rate, its share of the eligible and of the cohort,
  and the selection rate against the largest group's.
- In a back-test (`backtest_fairness`): per group, with "selected" as the prediction and "any
  counted offence in the window" as the truth, the false positive rate (selected, did not
  offend), the false negative rate (offended, not selected), the selection rate, the
  reoffending rate, and the reoffending rate in each score band (calibration).

Each metric is divided by the largest group's value (`reference_group`); a ratio outside
RATIO_RANGE (the four-fifths rule and its inverse) is flagged. A ratio is not computed when the
reference value is 0 or missing. Small groups give noisy ratios: `people` says how many.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import polars as pl
from fairlearn.metrics import MetricFrame, false_negative_rate, false_positive_rate, selection_rate

from evaluation.metrics import SCORE_BANDS, band_expr
from pipeline.warehouse import run_sql

RATIO_RANGE = (0.8, 1.25)
DIMENSIONS = ("ethnicity", "sex", "age_band")
NOT_RECORDED = "not recorded"
# (lowest age, label), each band up to the next one's lowest
AGE_BANDS: tuple[tuple[int, str], ...] = ((0, "under 18"), (18, "18-24"), (25, "25-34"), (35, "35-49"), (50, "50+"))

FAIRNESS_SCHEMA: dict[str, pl.DataType] = {
    "dimension": pl.Utf8(), "group": pl.Utf8(), "metric": pl.Utf8(), "people": pl.Int64(), "value": pl.Float64(),
    "reference_group": pl.Utf8(), "reference_value": pl.Float64(), "ratio": pl.Float64(), "flagged": pl.Boolean(),
}


def age_band_expr(age: pl.Expr) -> pl.Expr:
    expr = None
    for lowest, label in reversed(AGE_BANDS):
        expr = pl.when(age >= lowest).then(pl.lit(label)) if expr is None else expr.when(age >= lowest).then(pl.lit(label))
    return expr.otherwise(pl.lit(NOT_RECORDED))


def group_lookup(con: duckdb.DuckDBPyConnection, on: str = "person_key") -> pl.DataFrame:
    """[one person]: `on` (person_key or person_number), sex and ethnicity, from `people`; the
    back-test reads it once for all its dates."""
    return run_sql(con, "fairness: with groups", f"SELECT {on}, sex, ethnicity FROM people").pl()


def add_groups(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` (with sex, ethnicity and age) with the groups monitored: missing values named,
    and the age band."""
    return frame.with_columns(
        pl.col("ethnicity").fill_null(NOT_RECORDED),
        pl.col("sex").fill_null(NOT_RECORDED),
        age_band_expr(pl.col("age")).alias("age_band"),
    )


def with_groups(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, on: str = "person_key") -> pl.DataFrame:
    """`frame` (with `on`, person_key or person_number, and age) plus ethnicity, sex and
    age_band, from `people`."""
    return add_groups(frame.join(group_lookup(con, on), on=on, how="left", maintain_order="left"))


def _largest(sizes: pd.Series) -> str:
    """The largest group (ties: the first in name order)."""
    top = sizes.max()
    return sorted(str(g) for g, n in sizes.items() if n == top)[0]


def _long(frame: MetricFrame, dimension: str, metrics: list[str], sizes: pd.Series, rows: list[dict]) -> None:
    """One row per group and metric, each against the largest group's value."""
    for metric in metrics:
        _rows_against_largest(frame.by_group, dimension, metric, sizes, rows)


def _rows_against_largest(by_group: pd.DataFrame, dimension: str, metric: str, sizes: pd.Series, rows: list[dict],
                          label: str | None = None) -> None:
    reference = _largest(sizes)
    ref_value = by_group.loc[reference, metric]
    ref_value = None if pd.isna(ref_value) else float(ref_value)
    for group in sorted(by_group.index, key=str):
        value = by_group.loc[group, metric]
        value = None if pd.isna(value) else float(value)
        ratio = value / ref_value if value is not None and ref_value else None
        rows.append({
            "dimension": dimension, "group": str(group), "metric": label or metric, "people": int(sizes[group]),
            "value": value, "reference_group": reference, "reference_value": ref_value, "ratio": ratio,
            "flagged": ratio is not None and not RATIO_RANGE[0] <= ratio <= RATIO_RANGE[1],
        })


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=FAIRNESS_SCHEMA) if rows else pl.DataFrame(schema=FAIRNESS_SCHEMA)


def _people(y_true, y_pred, sample_weight) -> float:
    """How many people a (compressed) group stands for."""
    return float(np.sum(sample_weight))


def _reoffending_rate(y_true, y_pred, sample_weight) -> float:
    total = float(np.sum(sample_weight))
    return float(np.sum(np.asarray(y_true) * sample_weight) / total) if total else float("nan")


def _metric_frame(compressed: pd.DataFrame, metrics: dict, dimension: str, control: str | None = None) -> MetricFrame:
    """A MetricFrame over the compressed rows (one per distinct group, band, truth and
    prediction), each weighted by how many people it stands for: the same rates as one row per
    person, at a cost that does not grow with the population (fairlearn applies its metrics
    group by group in Python)."""
    weights = compressed["people"].to_numpy(dtype=float)
    return MetricFrame(
        metrics=metrics, y_true=compressed["y"].to_numpy(), y_pred=compressed["pred"].to_numpy(),
        sensitive_features=compressed[dimension], control_features=compressed[control] if control else None,
        sample_params={name: {"sample_weight": weights} for name in metrics},
    )


def _compress(frame: pl.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.group_by(keys).agg(pl.len().alias("people")).sort(keys).to_pandas()


def run_fairness(frame: pl.DataFrame) -> pl.DataFrame:
    """[one group and metric] in a run: `frame` is the ranked frame with the group columns
    (`with_groups`); the population is the eligible, the selected the priority cohort.
    Metrics: selection_rate (against the largest group's), share_of_eligible and
    share_of_cohort (against the group's share of the eligible); 'people' is the group's eligible."""
    eligible = frame.filter(pl.col("eligible")).with_columns(
        pl.col("priority").cast(pl.Int8).alias("pred"), pl.col("priority").cast(pl.Int8).alias("y"))
    rows: list[dict] = []
    if eligible.height == 0:
        return _frame(rows)
    total_selected = int(eligible.get_column("pred").sum())
    for dimension in DIMENSIONS:
        compressed = _compress(eligible, [dimension, "y", "pred"])
        mf = _metric_frame(compressed, {"selection_rate": selection_rate, "people": _people}, dimension)
        sizes = mf.by_group["people"]
        _long(mf, dimension, ["selection_rate"], sizes, rows)
        # composition: the group's share of the cohort against its share of the eligible
        for group in sorted(sizes.index, key=str):
            share_eligible = float(sizes[group] / eligible.height)
            share_cohort = (float(mf.by_group.loc[group, "selection_rate"] * sizes[group] / total_selected)
                            if total_selected else None)
            ratio = share_cohort / share_eligible if share_cohort is not None and share_eligible else None
            for metric, value, reference in (("share_of_eligible", share_eligible, None),
                                             ("share_of_cohort", share_cohort, share_eligible)):
                rows.append({
                    "dimension": dimension, "group": str(group), "metric": metric, "people": int(sizes[group]),
                    "value": value, "reference_group": None if reference is None else "(share of eligible)",
                    "reference_value": reference, "ratio": ratio if reference is not None else None,
                    "flagged": reference is not None and ratio is not None
                    and not RATIO_RANGE[0] <= ratio <= RATIO_RANGE[1],
                })
    return _frame(rows)


COUNT_SCHEMA: dict[str, pl.DataType] = {"dimension": pl.Utf8(), "group": pl.Utf8(), "band": pl.Utf8(),
                                        "y": pl.Int8(), "pred": pl.Int8(), "people": pl.Int64()}


def fairness_counts(frame: pl.DataFrame) -> pl.DataFrame:
    """[one dimension, group, score band, truth and prediction]: how many people. `frame` holds
    evaluated people with any_offence, selected, score and the group columns. Counts of
    several as-of dates add up (`backtest_fairness_from_counts` takes their sum)."""
    frame = frame.with_columns(pl.col("any_offence").cast(pl.Int8).alias("y"),
                               pl.col("selected").cast(pl.Int8).alias("pred"), band_expr(pl.col("score")).alias("band"))
    parts = [frame.group_by(pl.lit(dimension).alias("dimension"), pl.col(dimension).cast(pl.Utf8).alias("group"),
                            "band", "y", "pred").agg(pl.len().cast(pl.Int64).alias("people"))
             for dimension in DIMENSIONS]
    return pl.concat(parts).select(list(COUNT_SCHEMA)) if parts else pl.DataFrame(schema=COUNT_SCHEMA)


def backtest_fairness_from_counts(counts: pl.DataFrame) -> pl.DataFrame:
    """[one group and metric] in a back-test, from `fairness_counts` (summed over dates)."""
    rows: list[dict] = []
    counts = counts.group_by("dimension", "group", "band", "y", "pred").agg(pl.col("people").sum())
    if counts.height == 0:
        return _frame(rows)
    metrics = {"false_positive_rate": false_positive_rate, "false_negative_rate": false_negative_rate,
               "selection_rate": selection_rate, "reoffending_rate": _reoffending_rate, "people": _people}
    for dimension in DIMENSIONS:
        of_dimension = counts.filter(pl.col("dimension") == dimension).rename({"group": dimension})
        if of_dimension.height == 0:
            continue
        plain = of_dimension.group_by(dimension, "y", "pred").agg(pl.col("people").sum()).sort(dimension, "y", "pred")
        mf = _metric_frame(plain.to_pandas(), metrics, dimension)
        _long(mf, dimension, ["false_positive_rate", "false_negative_rate", "selection_rate", "reoffending_rate"],
              mf.by_group["people"], rows)
        # calibration: the reoffending rate per group within each score band (band as control feature)
        banded = _metric_frame(of_dimension.sort(dimension, "band", "y", "pred").to_pandas(),
                               {"reoffending_rate": _reoffending_rate, "people": _people}, dimension, control="band")
        table = banded.by_group
        for _, band in SCORE_BANDS:
            if band not in table.index.get_level_values(0):
                continue
            in_band = table.xs(band, level=0)
            in_band = in_band[in_band["people"].fillna(0) > 0]
            _rows_against_largest(in_band, dimension, "reoffending_rate", in_band["people"], rows,
                                  label=f"reoffending_rate_band_{band}")
    return _frame(rows)


def backtest_fairness(frame: pl.DataFrame) -> pl.DataFrame:
    """[one group and metric] in a back-test: `frame` holds the evaluated people with
    any_offence, selected, score and the group columns."""
    return backtest_fairness_from_counts(fairness_counts(frame))


def fairness_summary(table: pl.DataFrame) -> dict:
    """For a manifest or a report: how many ratios were checked and which were flagged."""
    flagged = table.filter(pl.col("flagged"))
    return {
        "ratio_range": list(RATIO_RANGE),
        "checked": int(table.filter(pl.col("ratio").is_not_null()).height),
        "flagged": [
            {"dimension": r["dimension"], "group": r["group"], "metric": r["metric"], "people": r["people"],
             "ratio": round(r["ratio"], 3)}
            for r in flagged.iter_rows(named=True)
        ],
    }


def run_fairness_at(con: duckdb.DuckDBPyConnection, ranked: pl.DataFrame) -> pl.DataFrame:
    """`run_fairness` of a run's ranked frame (the hook `iom run` calls)."""
    return run_fairness(with_groups(con, ranked.select("person_key", "age", "eligible", "priority")))

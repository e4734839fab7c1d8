"""The model's training data: snapshots at past as-of dates, their features and their outcomes.

A snapshot at D is what `iom run` would have seen at D: the same features
(`features.build.compute_features`), rule score and selection (`evaluation.backtest.score_rules_at`),
for the eligible people; its label is the back-test's outcome in the window after D
(`evaluation.outcomes.window_outcomes`, time at risk handled there: a person in custody at D is
followed from release, and one without a complete window is left out). The dates are the
back-test's (`evaluation.backtest.plan_dates`): every window lies inside the data.

The split, by time and by person (docs/model.md):

- each person falls in one group for good, from a fixed hash of their person number and the
  seed: `test` (share `test_people_share`), `calibration` (share `calibration_people_share`) or `fit`;
- the last `test_snapshots` dates (default a quarter of them, at least one) are the test
  period, the earlier ones the training period (with `embargo`, only the training dates whose
  outcome window ends by the first test date);
- the model is fitted on the `fit` people at the training dates, calibrated on the
  `calibration` people at the training dates, and tested on the `test` people at the test dates.
  Nothing about a test person (features or outcomes, at any date) reaches fitting or calibration.

The model's inputs (`MODEL_FEATURES`) are the features a rule may score (`rules.schema`), the
RoSH level as a number, the supervision and custody types as flags, and the age at the first
sanction. Ethnicity and sex are never read (the features frame holds neither); `age` is not an
input either, as for the rules. `AGE_DERIVED` and `SEX_DERIVED` name the inputs computed with
age or sex (the model card lists them; `[model] exclude_features` leaves any feature out).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

import duckdb
import numpy as np
import polars as pl

from evaluation.backtest import score_rules_at
from evaluation.outcomes import window_outcomes
from features.build import offence_codes
from pipeline.contract import CUSTODY_TYPES, ROSH_LEVELS, SUPERVISION_TYPES
from pipeline.errors import ConfigError, DataRangeError
from pipeline.warehouse import run_sql
from rules.schema import BOOLEAN_FEATURES, NUMERIC_FEATURES, RuleSet

log = logging.getLogger(__name__)

DERIVED_FEATURES: tuple[str, ...] = (
    "rosh_level", *(f"supervision_{t}" for t in SUPERVISION_TYPES if t != "none"),
    *(f"custody_{t}" for t in CUSTODY_TYPES),
)
MODEL_FEATURES: tuple[str, ...] = (*NUMERIC_FEATURES, *BOOLEAN_FEATURES, "first_sanction_age", *DERIVED_FEATURES)
AGE_DERIVED: tuple[str, ...] = ("first_sanction_age", "career_years", "copas_rate", "ogrs3_2yr")
SEX_DERIVED: tuple[str, ...] = ("ogrs3_2yr",)  # OGRS3's formula has terms for sex and age
# Never inputs, whatever the config says: they are monitored, not modelled.
NEVER_INPUTS = frozenset({"ethnicity", "sex", "age", "date_of_birth", "area", "person_key", "person_number"})
GROUPS = ("fit", "calibration", "test")
TARGETS = {"any": "any offence", "neighbourhood": "a neighbourhood crime", "violence": "a violent offence"}
# What a snapshot keeps besides the inputs: who, when, the rules' view, and the outcomes.
KEPT_COLUMNS = ("person_key", "person_number", "area", "age", "score", "priority", "rank")
OUTCOME_KEPT = ("window_start", "window_end", "any_offence", "offences", "neighbourhood", "violent")
_HASH_MULTIPLIER = 0x9E3779B1  # Fibonacci hashing: person numbers spread evenly over [0, 1)
_HASH_MODULUS = 2**32


def model_features(exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """The inputs, less `exclude` (a ConfigError names any that is not an input)."""
    unknown = [f for f in exclude if f not in MODEL_FEATURES]
    if unknown:
        raise ConfigError(f"[model] exclude_features: {', '.join(unknown)} is not a model input; "
                          f"the inputs are: {', '.join(MODEL_FEATURES)}")
    features = tuple(f for f in MODEL_FEATURES if f not in set(exclude))
    if not features:
        raise ConfigError("[model] exclude_features leaves no input")
    return features


def with_derived(frame: pl.DataFrame) -> pl.DataFrame:
    """The feature frame plus the derived inputs (RoSH level 1-4, type flags)."""
    levels = {level: i + 1 for i, level in enumerate(ROSH_LEVELS)}
    # cast: in one person's row (`iom explain`) a value that is missing reads as a column of no type
    rosh, supervision, custody = (pl.col(c).cast(pl.Utf8) for c in ("rosh", "supervision_type", "custody_type_at_d"))
    return frame.with_columns(
        rosh.replace_strict(levels, default=None, return_dtype=pl.Float64).alias("rosh_level"),
        *[(supervision == t).fill_null(False).alias(f"supervision_{t}") for t in SUPERVISION_TYPES if t != "none"],
        *[(custody == t).fill_null(False).alias(f"custody_{t}") for t in CUSTODY_TYPES],
    )


def input_columns(features: Sequence[str]) -> tuple[str, ...]:
    """The feature frame's columns the inputs are made from (`with_derived` makes the others)."""
    return tuple(c for c in dict.fromkeys((*features, "rosh", "supervision_type", "custody_type_at_d"))
                 if c not in DERIVED_FEATURES)


def informative(data: TrainingData, features: Sequence[str]) -> tuple[TrainingData, list[str], list[str]]:
    """(the data with only the informative inputs, their names, the inputs left out): an input
    with one value or none among the fit rows carries nothing. A workspace without a probation
    extract has no OGRS3, RoSH or supervision, and gradient boosting cannot bin an all-missing column."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column's min is NaN: left out
        keep = np.nanmax(data.x_fit, axis=0) > np.nanmin(data.x_fit, axis=0) if data.x_fit.size else \
            np.zeros(len(features), dtype=bool)
    unused = [f for f, k in zip(features, keep, strict=True) if not k]
    if not unused:
        return data, list(features), []
    log.info("inputs with one value or none in the training rows, left out: %s", ", ".join(unused))
    columns = np.flatnonzero(keep)
    return (replace(data, x_fit=data.x_fit[:, columns], x_cal=data.x_cal[:, columns], x_test=data.x_test[:, columns]),
            [f for f, k in zip(features, keep, strict=True) if k], unused)


def model_matrix(frame: pl.DataFrame, features: Sequence[str], order: str = "c") -> np.ndarray:
    """The inputs as a float32 matrix (booleans 0/1, unknown values NaN), rows as in `frame`;
    `order` "fortran" keeps each column contiguous (no transposing copy)."""
    return (frame.select(pl.col(f).cast(pl.Float32) for f in features)
            .to_numpy(order=order).astype(np.float32, copy=False))


def label_expr(target: str) -> pl.Expr:
    """The outcome the model predicts: any counted offence, a neighbourhood crime or a violent one."""
    if target == "any":
        return pl.col("any_offence")
    return (pl.col("neighbourhood" if target == "neighbourhood" else "violent") > 0)


def person_share(person_number: pl.Expr, seed: int) -> pl.Expr:
    """A fixed pseudo-random number in [0, 1) per person and seed (the same in every snapshot)."""
    mixed = (person_number.cast(pl.UInt64) * _HASH_MULTIPLIER + seed) % _HASH_MODULUS
    return mixed.cast(pl.Float64) / _HASH_MODULUS


@dataclass(frozen=True)
class SplitPlan:
    train_dates: tuple[date, ...]
    test_dates: tuple[date, ...]
    test_share: float
    calibration_share: float
    seed: int

    def describe(self) -> str:
        return (f"fit on the 'fit' people ({1 - self.test_share - self.calibration_share:.0%} of people) at "
                f"{len(self.train_dates)} training dates ({self.train_dates[0]} to {self.train_dates[-1]}); "
                f"calibrated on the 'calibration' people ({self.calibration_share:.0%}) at the same dates; "
                f"tested on the 'test' people ({self.test_share:.0%}) at {len(self.test_dates)} later dates "
                f"({self.test_dates[0]} to {self.test_dates[-1]}); no test person contributes to fitting or "
                "calibration")


def plan_split(dates: Sequence[date], horizon_days: int, test_snapshots: int | None, test_share: float,
               calibration_share: float, seed: int, embargo: bool) -> SplitPlan:
    """Training and test dates (DataRangeError when the dates cannot make both)."""
    dates = sorted(dates)
    if test_share + calibration_share >= 0.9:
        raise ConfigError("[model] test_people_share + calibration_people_share must leave at least 10% "
                          "of people to fit on")
    if len(dates) < 2:
        raise DataRangeError(f"one snapshot ({dates[0]}) cannot give both a training and a later test period",
                             hint="widen --from/--to so that at least two snapshot dates fit the data")
    n_test = test_snapshots or max(1, len(dates) // 4)
    if n_test >= len(dates):
        raise ConfigError(f"[model] test_snapshots = {n_test} leaves no training date among {len(dates)} snapshots")
    test, train = dates[-n_test:], dates[:-n_test]
    if embargo:
        train = [d for d in train if d + timedelta(days=horizon_days) <= test[0]]
        if not train:
            raise DataRangeError(
                f"with the embargo, a training snapshot's {horizon_days}-day window must end by the first "
                f"test date {test[0]}, and none does",
                hint=f"start earlier (--from {(test[0] - timedelta(days=horizon_days)).isoformat()} or before), "
                     "or set [model] embargo = false")
    return SplitPlan(tuple(train), tuple(test), test_share, calibration_share, seed)


def group_expr(plan: SplitPlan) -> pl.Expr:
    """'test', 'calibration' or 'fit' for each person."""
    share = person_share(pl.col("person_number"), plan.seed)
    return (pl.when(share < plan.test_share).then(pl.lit("test"))
            .when(share < plan.test_share + plan.calibration_share).then(pl.lit("calibration"))
            .otherwise(pl.lit("fit")).alias("group"))


@dataclass
class TrainingData:
    """The split's rows as `models.train` uses them: the inputs of the fit and calibration rows
    as float32 matrices (nothing else of them is kept but their labels and the calibration
    rows' rules score), and the test rows as a frame (who, when, the rules' view, the outcomes)
    with their inputs as a matrix in the same row order."""

    x_fit: np.ndarray
    y_fit: np.ndarray
    x_cal: np.ndarray
    y_cal: np.ndarray
    cal_score: np.ndarray  # the rules score of the calibration rows (mapped to a probability)
    test: pl.DataFrame  # as_of, group, KEPT_COLUMNS, OUTCOME_KEPT, label
    x_test: np.ndarray
    people_sampled: int | None = None  # with max_people: the people kept, else None

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows (person-snapshots) and positives per part of the split."""
        labels = {"fit": self.y_fit, "calibration": self.y_cal, "test": self.test.get_column("label").to_numpy()}
        return {part: {"rows": int(y.size), "positives": int(y.sum())} for part, y in labels.items()}


@dataclass(frozen=True)
class _Source:
    """What every snapshot date reads once: the people (and the subsample), the offence codes."""

    people: pl.DataFrame  # person_key, person_number (only the people kept by max_people)
    codes: pl.DataFrame
    needed: tuple[str, ...]  # the feature frame's columns the inputs are made from
    sampled: int | None


def _source(con: duckdb.DuckDBPyConnection, rules: RuleSet, reference: pl.DataFrame, plan: SplitPlan,
            features: Sequence[str], max_people: int | None) -> _Source:
    people = run_sql(con, "model: snapshots", "SELECT person_key, person_number FROM people").pl()
    sampled = None
    if max_people is not None and people.height > max_people:
        # A person-level subsample, fixed by the seed: the same people at every date, each group
        # of the split thinned alike (the hash is independent of the one that makes the groups).
        total = people.height
        people = people.filter(person_share(pl.col("person_number"), plan.seed + 1) < max_people / total)
        sampled = people.height
        log.info("training data: a fixed subsample of %d of %d people ([model] max_people = %d)",
                 sampled, total, max_people)
    return _Source(people, offence_codes(con, reference, rules.unknown_offence), input_columns(features), sampled)


def snapshot_at(con: duckdb.DuckDBPyConnection, rules: RuleSet, reference: pl.DataFrame, plan: SplitPlan,
                as_of: date, horizon_days: int, last_covered: date, target: str, features: Sequence[str],
                source: _Source) -> pl.DataFrame:
    """[one eligible person at risk at `as_of` whom the split uses there]: as_of, group,
    KEPT_COLUMNS, the inputs (float32), the outcomes and `label`, in person order (so that the
    same data always give the same rows in the same order, and so the same model)."""
    ranked = score_rules_at(con, rules, reference, as_of)
    frame = (ranked.lazy().filter(pl.col("eligible"))
             .select(*[c for c in KEPT_COLUMNS if c != "person_number"], *source.needed)
             .join(source.people.lazy(), on="person_key", how="inner")
             .with_columns(group_expr(plan))
             .filter(pl.col("group") == "test" if as_of in plan.test_dates else pl.col("group") != "test")
             .collect())
    del ranked  # the run's whole scored frame: the largest thing held while a snapshot is made
    outcomes = window_outcomes(con, frame.select("person_number"), as_of, horizon_days, last_covered,
                               rules.counted_outcomes, source.codes).filter(pl.col("at_risk"))
    return (with_derived(frame).join(outcomes.select("person_number", *OUTCOME_KEPT), on="person_number",
                                     how="inner")
            .select(pl.lit(as_of).alias("as_of"), "group", *KEPT_COLUMNS,
                    *[pl.col(f).cast(pl.Float32) for f in features], *OUTCOME_KEPT,
                    label_expr(target).cast(pl.Int8).alias("label"))
            .sort("person_number"))


def snapshots(con: duckdb.DuckDBPyConnection, rules: RuleSet, reference: pl.DataFrame, plan: SplitPlan,
              horizon_days: int, last_covered: date, target: str, features: Sequence[str],
              max_people: int | None = None) -> pl.DataFrame:
    """Every snapshot date's rows (`snapshot_at`) in one frame, by date: the training data in
    full, for inspection and tests (`training_data` keeps only what training reads)."""
    source = _source(con, rules, reference, plan, features, max_people)
    return pl.concat([snapshot_at(con, rules, reference, plan, d, horizon_days, last_covered, target, features,
                                  source) for d in sorted((*plan.train_dates, *plan.test_dates))])


def _stack(blocks: list[np.ndarray], width: int) -> np.ndarray:
    """The blocks one under the other in one preallocated array, each freed once copied (so no
    more than one block is ever held twice)."""
    out = np.empty((sum(b.shape[0] for b in blocks), width), dtype=np.float32)
    row = 0
    while blocks:
        block = blocks.pop(0)
        out[row:row + block.shape[0]] = block
        row += block.shape[0]
    return out


def training_data(con: duckdb.DuckDBPyConnection, rules: RuleSet, reference: pl.DataFrame, plan: SplitPlan,
                  horizon_days: int, last_covered: date, target: str, features: Sequence[str],
                  max_people: int | None = None) -> TrainingData:
    """The snapshots (`snapshot_at`, one date at a time) as training reads them: each date's
    fit and calibration rows are cut down to their float32 inputs and labels at once, and the
    test rows keep no more than the evaluation reads. Memory: the kept rows (about 170 bytes
    a fit or calibration row) plus one date's scoring."""
    source = _source(con, rules, reference, plan, features, max_people)
    blocks: dict[str, list[np.ndarray]] = {g: [] for g in GROUPS}
    labels: dict[str, list[np.ndarray]] = {g: [] for g in GROUPS}
    cal_scores, test_frames = [], []
    for as_of in sorted((*plan.train_dates, *plan.test_dates)):
        frame = snapshot_at(con, rules, reference, plan, as_of, horizon_days, last_covered, target, features, source)
        for group in GROUPS:
            part = frame.filter(pl.col("group") == group)
            if part.height == 0:
                continue
            blocks[group].append(model_matrix(part, features))
            labels[group].append(part.get_column("label").to_numpy())
            if group == "calibration":
                cal_scores.append(part.get_column("score").to_numpy())
            if group == "test":
                test_frames.append(part.drop(*features))
        log.info("snapshot %s: %d people at risk (%s)", as_of.isoformat(), frame.height,
                 "test" if as_of in plan.test_dates else "training")
        del frame

    def label(group: str) -> np.ndarray:
        return np.concatenate(labels[group]) if labels[group] else np.zeros(0, dtype=np.int8)

    width = len(features)
    test = pl.concat(test_frames) if test_frames else pl.DataFrame({"label": pl.Series([], dtype=pl.Int8)})
    return TrainingData(
        x_fit=_stack(blocks["fit"], width), y_fit=label("fit"), x_cal=_stack(blocks["calibration"], width),
        y_cal=label("calibration"),
        cal_score=np.concatenate(cal_scores) if cal_scores else np.zeros(0, dtype=np.int64),
        test=test, x_test=_stack(blocks["test"], width), people_sampled=source.sampled)


def check_positives(counts: dict[str, dict[str, int]], minimum: int, target: str) -> dict[str, dict[str, int]]:
    """`counts` (`TrainingData.counts`) back; DataRangeError when a part of the split has fewer
    than `minimum` positives or no negative."""
    short = [f"{p} {c['positives']:,} of {c['rows']:,}" for p, c in counts.items()
             if c["positives"] < minimum or c["positives"] == c["rows"]]
    if short:
        raise DataRangeError(
            f"too few positives ({TARGETS[target]} in the window) to train and test a model: {'; '.join(short)} "
            f"rows are positive, and each part needs at least {minimum} positives and one negative",
            hint="use more snapshot dates (--from earlier), a broader --target, or lower [model] min_positives")
    return counts

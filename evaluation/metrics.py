"""Back-test metrics: how well a score ranks people by what they went on to do.

- ROC AUC and average precision are scikit-learn's (`roc_auc_score`, `average_precision_score`),
  given one row per distinct score value and outcome, weighted by how many people it stands
  for: the same values as one row per person (both merge tied scores into one threshold; the
  tests check it), at the cost of the distinct values, not of millions of people;
  the AUC's confidence interval is a Poisson bootstrap (each person weighted by a Poisson(1)
  draw per resample, `BOOTSTRAP_RESAMPLES` resamples, fixed seed), drawn per distinct score
  value (see `bootstrap_auc_ci`), so it costs about as much as one AUC, not hundreds.
- precision at the cohort size: the share of the selected who offended in the window;
- capture: the share of all window offences (or neighbourhood crimes) of the evaluated people
  that the selected committed;
- the capture curve: capture when the top x% by score are taken, ties in score taken together
  in person order;
- reoffending rate by score band.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, roc_auc_score

BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 20261201
CONFIDENCE = 0.95
# Rule-score bands for the reoffending-rate table: (lowest score, label); each runs to the next.
SCORE_BANDS: tuple[tuple[int, str], ...] = (
    (0, "0"), (1, "1-9"), (10, "10-19"), (20, "20-29"), (30, "30-39"), (40, "40-49"), (50, "50-59"), (60, "60+"),
)
CURVE_POINTS = tuple(round(i / 100, 2) for i in range(0, 101))
# A score of whole numbers spanning fewer than this many values (the rules, counts) is counted
# with np.bincount and sorted as 16-bit keys; others (OGRS3, the Copas rate) by group-by and sort.
_DENSE_SPAN = 1 << 16


def _two_classes(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < int(y.sum()) < y.size


def _weighted_rows(values: np.ndarray, positives: np.ndarray, negatives: np.ndarray):
    """(truth, score, weight): one row per distinct value and class present."""
    keep_p, keep_n = positives > 0, negatives > 0
    truth = np.r_[np.ones(keep_p.sum()), np.zeros(keep_n.sum())]
    return truth, np.r_[values[keep_p], values[keep_n]], np.r_[positives[keep_p], negatives[keep_n]]


def _defined(positives: np.ndarray, negatives: np.ndarray) -> bool:
    return positives.sum() > 0 and negatives.sum() > 0


def auc_from_counts(values: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """ROC AUC (scikit-learn's) from the positives and negatives at each distinct score value;
    None with one class only."""
    if not _defined(positives, negatives):
        return None
    truth, scores, weights = _weighted_rows(values, positives, negatives)
    return float(roc_auc_score(truth, scores, sample_weight=weights))


def ap_from_counts(values: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> float | None:
    if not _defined(positives, negatives):
        return None
    truth, scores, weights = _weighted_rows(values, positives, negatives)
    return float(average_precision_score(truth, scores, sample_weight=weights))


def _counts_of(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values, inverse = np.unique(score, return_inverse=True)
    positives = np.bincount(inverse, weights=y.astype(np.float64), minlength=values.size)
    return values, positives, np.bincount(inverse, minlength=values.size).astype(np.float64) - positives


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC of one row per person, computed on the weighted distinct values."""
    return auc_from_counts(*_counts_of(y, score)) if _two_classes(y) else None


def average_precision(y: np.ndarray, score: np.ndarray) -> float | None:
    return ap_from_counts(*_counts_of(y, score)) if _two_classes(y) else None


def _auc_of_groups(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC per row from positive and negative weights per tied-score group (columns in score
    order), ties counted half: the Mann-Whitney statistic."""
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def weighted_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC per row of `weights` (resamples x people). With weights of 1 it equals
    scikit-learn's roc_auc_score."""
    _, inverse = np.unique(score, return_inverse=True)
    w = np.atleast_2d(weights).astype(np.float64)
    groups = inverse.max() + 1 if inverse.size else 0
    pos = np.stack([np.bincount(inverse, weights=row * y, minlength=groups) for row in w])
    neg = np.stack([np.bincount(inverse, weights=row * (1 - y), minlength=groups) for row in w])
    return _auc_of_groups(pos, neg)


def bootstrap_from_counts(positives: np.ndarray, negatives: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int = BOOTSTRAP_SEED, level: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The percentile interval of the AUC over Poisson-bootstrap resamples (None, None if
    undefined), from the positives and negatives at each distinct score value (in score order).

    A sum of k independent Poisson(1) weights is Poisson(k), so each resample draws one weight
    for the positives and one for the negatives of each distinct score value: the same
    distribution as weighting every person, at the cost of the distinct values only."""
    if not _defined(positives, negatives):
        return None, None
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, 4_000_000 // positives.size))  # bounded memory at any size
    values = []
    for done in range(0, resamples, chunk):
        size = (min(chunk, resamples - done), positives.size)
        values.append(_auc_of_groups(rng.poisson(positives, size=size).astype(np.float64),
                                     rng.poisson(negatives, size=size).astype(np.float64)))
    aucs = np.concatenate(values)
    aucs = aucs[np.isfinite(aucs)]
    tail = (1 - level) / 2
    return float(np.quantile(aucs, tail)), float(np.quantile(aucs, 1 - tail))


def bootstrap_auc_ci(y: np.ndarray, score: np.ndarray, **options) -> tuple[float | None, float | None]:
    """`bootstrap_from_counts` of one row per person."""
    if not _two_classes(y):
        return None, None
    _, positives, negatives = _counts_of(y, score)
    return bootstrap_from_counts(positives, negatives, **options)


def precision_at(y: np.ndarray, selected: np.ndarray) -> float | None:
    chosen = int(selected.sum())
    return float(y[selected].sum() / chosen) if chosen else None


def capture(counts: np.ndarray, selected: np.ndarray) -> float | None:
    """Share of all `counts` (window offences per person) that the selected people hold."""
    total = float(counts.sum())
    return float(counts[selected].sum() / total) if total else None


def capture_curve(frame: pl.DataFrame, score: str, counts: str, tie: str = "person_key") -> pl.DataFrame:
    """Capture at each share of people in CURVE_POINTS, taking people by `score` (highest first;
    ties in `tie` order, the person): columns share_of_people, capture."""
    ordered = frame.select(score, counts, tie).sort(tie)
    values = ordered.get_column(score).cast(pl.Float64).fill_null(-np.inf).to_numpy()  # missing scores last
    return capture_curve_of(values, ordered.get_column(counts).to_numpy())


def _whole_span(score: np.ndarray) -> tuple[float, float] | None:
    """(lowest, highest) when `score` holds whole numbers spanning fewer than _DENSE_SPAN values."""
    if not score.size:
        return None
    low, high = score.min(), score.max()
    if np.isfinite(low) and np.isfinite(high) and high - low < _DENSE_SPAN and np.array_equal(score, np.floor(score)):
        return float(low), float(high)
    return None


def _descending_stable(score: np.ndarray) -> np.ndarray:
    """The order of `score`, highest first, ties in array order. Whole-number scores (the rules,
    counts) sort as 16-bit keys, which numpy's stable sort takes by radix: one pass, no compares."""
    span = _whole_span(score)
    if span is not None:
        return np.argsort((span[1] - score).astype(np.uint16), kind="stable")
    return np.argsort(-score, kind="stable")


def capture_curve_of(score: np.ndarray, counts: np.ndarray) -> pl.DataFrame:
    """`capture_curve` of arrays already in tie order (the person): a stable sort on the score
    keeps that order within ties."""
    values = counts[_descending_stable(score)].astype(np.float64)
    total = values.sum()
    cumulative = np.r_[0.0, np.cumsum(values)]
    taken = [int(round(share * values.size)) for share in CURVE_POINTS]
    shares = [float(cumulative[k] / total) if total else None for k in taken]
    return pl.DataFrame({"share_of_people": list(CURVE_POINTS), "capture": shares},
                        schema={"share_of_people": pl.Float64, "capture": pl.Float64})


def band_expr(score: pl.Expr) -> pl.Expr:
    """The SCORE_BANDS label of a rule score."""
    expr = None
    for lowest, label in reversed(SCORE_BANDS):
        cond = score >= lowest
        expr = pl.when(cond).then(pl.lit(label)) if expr is None else expr.when(cond).then(pl.lit(label))
    return expr.otherwise(pl.lit(SCORE_BANDS[0][1]))


def band_counts(frame: pl.DataFrame, score: str = "score", outcome: str = "any_offence",
                offences: str = "offences") -> pl.DataFrame:
    """[one score band]: people, reoffenders and window offences (they add up over dates)."""
    return frame.group_by(band_expr(pl.col(score)).alias("band")).agg(
        pl.len().cast(pl.Int64).alias("people"), pl.col(outcome).cast(pl.Int64).sum().alias("reoffenders"),
        pl.col(offences).cast(pl.Int64).sum().alias("offences"))


def rate_by_band_from_counts(counts: pl.DataFrame) -> pl.DataFrame:
    """[one score band]: people, reoffenders, reoffending rate and window offences per person."""
    order = {label: i for i, (_, label) in enumerate(SCORE_BANDS)}
    return (
        counts.group_by("band").agg(pl.col("people", "reoffenders", "offences").sum())
        .with_columns((pl.col("reoffenders") / pl.col("people")).alias("rate"),
                      (pl.col("offences") / pl.col("people")).alias("offences_per_person"))
        .sort(pl.col("band").replace_strict(order, return_dtype=pl.Int32))
    )


def rate_by_band(frame: pl.DataFrame, score: str = "score", outcome: str = "any_offence",
                 offences: str = "offences") -> pl.DataFrame:
    return rate_by_band_from_counts(band_counts(frame, score, outcome, offences))


COUNT_SCHEMA: dict[str, pl.DataType] = {"value": pl.Float64(), "people": pl.Int64(), "any": pl.Int64(),
                                        "neighbourhood_any": pl.Int64(), "violent_any": pl.Int64()}
TOTAL_KEYS = ("selected", "selected_reoffenders", "selected_offences", "selected_neighbourhood", "offences",
              "neighbourhood")


def score_counts(score: np.ndarray, y: np.ndarray, neighbourhood_any: np.ndarray, violent_any: np.ndarray
                 ) -> pl.DataFrame:
    """[one distinct score value]: people, and how many had each outcome. The counts of
    several as-of dates add up, so pooled metrics need no person-level rows."""
    score = score.astype(np.float64)
    span = _whole_span(score)
    if span is not None:
        low = span[0]
        index = (score - low).astype(np.int64)
        people = np.bincount(index)
        present = np.flatnonzero(people)
        columns = {"value": present + low, "people": people[present]}
        for name, flags in (("any", y), ("neighbourhood_any", neighbourhood_any), ("violent_any", violent_any)):
            columns[name] = np.bincount(index, weights=flags, minlength=people.size)[present].astype(np.int64)
        return pl.DataFrame(columns, schema=COUNT_SCHEMA)
    frame = pl.DataFrame({"value": score, "any": y.astype(np.int64),
                          "neighbourhood_any": neighbourhood_any.astype(np.int64),
                          "violent_any": violent_any.astype(np.int64)})
    return frame.group_by("value").agg(pl.len().cast(pl.Int64).alias("people"), pl.col("any").sum(),
                                       pl.col("neighbourhood_any").sum(), pl.col("violent_any").sum()
                                       ).select(list(COUNT_SCHEMA))


def selection_totals(y: np.ndarray, selected: np.ndarray, offences: np.ndarray, neighbourhood: np.ndarray) -> dict:
    """What the selection holds, and the totals it is measured against (they add up over dates)."""
    return {"selected": int(selected.sum()), "selected_reoffenders": int(y[selected].sum()),
            "selected_offences": int(offences[selected].sum()),
            "selected_neighbourhood": int(neighbourhood[selected].sum()),
            "offences": int(offences.sum()), "neighbourhood": int(neighbourhood.sum())}


def metrics_from_counts(counts: pl.DataFrame, totals: dict, bootstrap: bool = True) -> dict:
    """Every metric of one score from its `score_counts` (summed over dates if pooled) and its
    `selection_totals`. Without `bootstrap` (the per-date rows) the interval and the
    neighbourhood and violence AUCs are left out: the pooled rows give them."""
    merged = counts.group_by("value").agg(pl.all().sum()).sort("value")
    values = merged.get_column("value").to_numpy()
    people = merged.get_column("people").to_numpy().astype(np.float64)

    def split(column: str) -> tuple[np.ndarray, np.ndarray]:
        positives = merged.get_column(column).to_numpy().astype(np.float64)
        return positives, people - positives

    pos, neg = split("any")
    low, high = bootstrap_from_counts(pos, neg) if bootstrap else (None, None)
    n, reoffenders = int(people.sum()), int(pos.sum())

    def ratio(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    return {
        "people": n,
        "reoffenders": reoffenders,
        "base_rate": ratio(reoffenders, n),
        "auc": auc_from_counts(values, pos, neg),
        "auc_low": low,
        "auc_high": high,
        "average_precision": ap_from_counts(values, pos, neg),
        "auc_neighbourhood": auc_from_counts(values, *split("neighbourhood_any")) if bootstrap else None,
        "auc_violence": auc_from_counts(values, *split("violent_any")) if bootstrap else None,
        "cohort_size": totals["selected"],
        "precision_at_cohort": ratio(totals["selected_reoffenders"], totals["selected"]),
        "capture_offences": ratio(totals["selected_offences"], totals["offences"]),
        "capture_neighbourhood": ratio(totals["selected_neighbourhood"], totals["neighbourhood"]),
    }


METRIC_SCHEMA: dict[str, pl.DataType] = {
    "people": pl.Int64(), "reoffenders": pl.Int64(), "base_rate": pl.Float64(), "auc": pl.Float64(),
    "auc_low": pl.Float64(), "auc_high": pl.Float64(), "average_precision": pl.Float64(),
    "auc_neighbourhood": pl.Float64(), "auc_violence": pl.Float64(), "cohort_size": pl.Int64(),
    "precision_at_cohort": pl.Float64(), "capture_offences": pl.Float64(), "capture_neighbourhood": pl.Float64(),
}

"""Scoring: points per component with a reason sentence for each, and eligibility.

`score(features, rules)` adds the score columns to a feature frame (one row per person, as
`features.build.compute_features` makes it); it selects nothing (`rules.select` does). The
back-test and the model call it on historical snapshots. Vectorised Polars expressions: no
Python loop runs per person.
"""

from __future__ import annotations

import string
from enum import StrEnum

import polars as pl

from pipeline.errors import ConfigError
from rules.schema import BOOLEAN_FEATURES, CATEGORY_FEATURES, RuleSet, Term

# The columns score() adds (besides points_<component>, which follow ineligible_code).
SCORE_COLUMNS = ("eligible", "ineligible_reason", "ineligible_code", "score", "reasons")


class EligibilityReason(StrEnum):
    """Why a person is not eligible: the value of `ineligible_code`. The sentence shown to the
    panel (`ineligible_reason`) may be reworded freely; code that acts on a reason (movement,
    statistics by cause) reads the code."""

    DECEASED = "deceased"
    UNDER_MIN_AGE = "under_min_age"
    MAPPA_LEVEL = "mappa_level"
    LONG_CUSTODY = "long_custody"
    OUT_OF_AREA = "out_of_area"


def _value_text(term: Term) -> pl.Expr:
    column = pl.col(term.feature)
    if term.feature in CATEGORY_FEATURES:
        return column.str.replace_all("_", " ")
    if term.feature in BOOLEAN_FEATURES:
        return pl.when(column).then(pl.lit("yes")).otherwise(pl.lit("no"))
    if term.feature == "ogrs3_2yr":
        return column.round(1).cast(pl.Utf8)
    if term.feature == "copas_rate":  # a log rate: its sign and first decimals are the information
        return column.round(2).cast(pl.Utf8)
    return column.cast(pl.Int64).cast(pl.Utf8)


def _reason_expr(term: Term, points: pl.Expr) -> pl.Expr:
    """The term's sentence with its points ("4 offences in the last 12 months: +20"), null at 0."""
    parts: list[pl.Expr] = []
    for literal, name, _spec, _conv in string.Formatter().parse(term.reason):
        if literal:
            parts.append(pl.lit(literal))
        if name == "value":
            parts.append(_value_text(term))
        elif name in ("s", "es"):
            parts.append(pl.when(pl.col(term.feature) == 1).then(pl.lit("")).otherwise(pl.lit(name)))
    parts.append(pl.lit(": +"))
    parts.append(points.cast(pl.Utf8))
    return pl.when(points > 0).then(pl.concat_str(parts)).otherwise(None)


_DENSE_VALUES = 100_000


def _reason_lookup(features: pl.DataFrame, term: Term) -> pl.Expr:
    """The term's reason per person, built once per distinct feature value and looked up:
    a line depends only on the value, and distinct values are few (a count, a type)."""
    column = features.get_column(term.feature)
    low, high = (column.min(), column.max()) if column.dtype.is_integer() else (None, None)
    if low is not None and high - low <= _DENSE_VALUES:  # a range of counts: no pass to find the distinct ones
        values = pl.DataFrame({term.feature: pl.int_range(low, high + 1, eager=True, dtype=column.dtype)})
    else:
        values = features.select(pl.col(term.feature).unique().drop_nulls())
    lines = values.with_columns(_reason_expr(term, _term_points(term)).alias("_line")).drop_nulls("_line")
    if lines.height == 0:
        return pl.lit(None, dtype=pl.Utf8)
    return pl.col(term.feature).replace_strict(
        lines.get_column(term.feature), lines.get_column("_line"), default=None, return_dtype=pl.Utf8
    )


def _term_points(term: Term) -> pl.Expr:
    value = pl.col(term.feature)
    if term.kind == "bands":
        expr = None
        if term.band_key == "min":
            ordered = sorted(term.bands, key=lambda b: -b.bound)  # highest min first
            for band in ordered:
                cond = value >= band.bound
                expr = pl.when(cond).then(pl.lit(band.points)) if expr is None else expr.when(cond).then(pl.lit(band.points))
        else:
            for band in term.bands:  # smallest max first
                cond = value <= band.bound
                expr = pl.when(cond).then(pl.lit(band.points)) if expr is None else expr.when(cond).then(pl.lit(band.points))
        result = expr.otherwise(pl.lit(0))
    elif term.kind == "per":
        result = value.cast(pl.Int64).clip(lower_bound=0) * term.per
        if term.cap is not None:
            result = result.clip(upper_bound=term.cap)
    elif term.kind == "flag":
        if term.feature in BOOLEAN_FEATURES:
            cond = value
        else:
            cond = pl.lit(True)
            if term.min is not None:
                cond = cond & (value >= term.min)
            if term.max is not None:
                cond = cond & (value <= term.max)
        result = pl.when(cond).then(pl.lit(term.points)).otherwise(pl.lit(0))
    else:
        result = value.replace_strict(term.by_value, default=0, return_dtype=pl.Int64)
    return result.fill_null(0).cast(pl.Int64)


def _eligibility_checks(rules: RuleSet) -> list[tuple[EligibilityReason, pl.Expr, pl.Expr]]:
    """(code, condition, sentence) of each exclusion the rule set makes, the first match winning."""
    rule = rules.eligibility
    checks: list[tuple[EligibilityReason, pl.Expr, pl.Expr]] = []
    if rule.exclude_deceased:
        checks.append((EligibilityReason.DECEASED, pl.col("deceased").fill_null(False), pl.lit("deceased")))
    if rule.min_age is not None:
        # Unknown age is not excluded: the panel sees it (the police extract requires a date of birth).
        checks.append((EligibilityReason.UNDER_MIN_AGE, pl.col("age") < rule.min_age, pl.lit(f"under {rule.min_age}")))
    if rule.exclude_mappa_levels:
        checks.append((
            EligibilityReason.MAPPA_LEVEL,
            pl.col("mappa_level").is_in(list(rule.exclude_mappa_levels)),
            pl.lit("MAPPA level ") + pl.col("mappa_level").cast(pl.Utf8),
        ))
    if rule.exclude_long_custody:
        due = pl.col("days_until_release") <= rule.release_window_days
        checks.append((
            EligibilityReason.LONG_CUSTODY,
            pl.col("in_custody") & ~due.fill_null(False),
            pl.lit(f"in custody, release not due within {rule.release_window_days} days"),
        ))
    if rule.areas:
        checks.append((EligibilityReason.OUT_OF_AREA, ~pl.col("area").is_in(list(rule.areas)).fill_null(False),
                       pl.lit("area not in scope")))
    return checks


def _eligibility_exprs(rules: RuleSet) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """eligible, ineligible_reason (the sentence) and ineligible_code (an EligibilityReason)."""
    checks = _eligibility_checks(rules)
    if not checks:
        return pl.lit(True), pl.lit(None, dtype=pl.Utf8), pl.lit(None, dtype=pl.Utf8)
    code = pl.when(checks[0][1].fill_null(False)).then(pl.lit(checks[0][0].value))
    for reason, cond, _ in checks[1:]:
        code = code.when(cond.fill_null(False)).then(pl.lit(reason.value))
    code = code.otherwise(pl.lit(None, dtype=pl.Utf8))
    # The sentence follows the code, so the two never disagree.
    first, *rest = checks
    text = pl.when(code == first[0].value).then(first[2])
    for reason, _, sentence in rest:
        text = text.when(code == reason.value).then(sentence)
    return code.is_null(), text.otherwise(pl.lit(None, dtype=pl.Utf8)), code


def score(features: pl.DataFrame, rules: RuleSet) -> pl.DataFrame:
    """Features plus eligible, ineligible_reason, ineligible_code, points_<component> (one per
    component), score and reasons, in the order of `features`. Pure: no selection, no I/O."""
    missing = sorted({t.feature for c in rules.components for t in c.terms} - set(features.columns))
    if missing:
        raise ConfigError(f"{rules.path.name}: features missing for scoring: {', '.join(missing)}")
    point_columns: list[pl.Expr] = []
    reason_columns: list[pl.Expr] = []
    for component in rules.components:
        term_points = [_term_points(t) for t in component.terms]
        reasons = [_reason_lookup(features, t) for t in component.terms]
        if component.combine == "sum" or len(term_points) == 1:
            total = pl.sum_horizontal(term_points)
            reason_columns.extend(reasons)
        else:
            total = pl.max_horizontal(term_points)
            # Only the first term reaching the maximum explains the points.
            chosen = pl.when(term_points[0] == total).then(reasons[0])
            for points, reason in zip(term_points[1:], reasons[1:], strict=True):
                chosen = chosen.when(points == total).then(reason)
            reason_columns.append(chosen.otherwise(None))
        point_columns.append(total.cast(pl.Int64).alias(f"points_{component.name}"))
    eligible, reason, code = _eligibility_exprs(rules)
    scored = features.with_columns(
        eligible.alias("eligible"),
        reason.alias("ineligible_reason"),
        code.alias("ineligible_code"),
        *point_columns,
        pl.concat_str(reason_columns, separator="\n", ignore_nulls=True).alias("reasons"),
    )
    return scored.with_columns(
        pl.sum_horizontal([f"points_{c.name}" for c in rules.components]).cast(pl.Int64).alias("score")
    ).select([*features.columns, *SCORE_COLUMNS[:3], *[f"points_{c.name}" for c in rules.components],
              *SCORE_COLUMNS[3:]])

"""Selection: rank the scored, fill each area's priority cohort up to its capacity, flag the
super-prolific, type members Fixed or Flex, list custody leavers worth preparing for, and count
what was done (`SelectionStats`).

The panel's decisions in force (`panel`, made by `pipeline.decisions.panel_at`) change only
who is in: an accepted, eligible person is in the priority cohort whatever their rank, typed as
the panel said; a rejected person is in neither cohort. Manual includes take places of their
area's capacity first, and the ranked fill the places left, in rank order, skipping the rejected;
an area whose includes exceed its capacity takes nobody by rank (docs/decisions.md). Ranks are
the rules' ranks, unchanged. Without a panel the selection is exactly the rules' own.

`select_cohorts(scored, rules)` takes the frame `rules.score.score` returns; the back-test calls
the two apart. Vectorised Polars expressions: no Python loop runs per person.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import polars as pl

from pipeline.identifiers import PERSON_KEY_PATTERN
from pipeline.keys import RANK_KEY
from rules.schema import RuleSet
from rules.score import SCORE_COLUMNS, score

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AreaStats:
    """One area's priority cohort (the eligible, by their area; NO_AREA when unknown)."""

    selected: int
    capacity: int
    eligible: int
    reaching_min_score: int
    super_prolific: int


@dataclass(frozen=True)
class SelectionStats:
    """What a selection did, for the run manifest (`to_dict`) and the CLI's summary."""

    assessed: int
    eligible: int
    ineligible: dict[str, int]  # by ineligible_reason sentence, sorted
    priority: int
    priority_by_area: dict[str, AreaStats]  # sorted by area
    min_score: int
    super_prolific: int
    super_prolific_offences_12m: int
    offences_12m: int
    super_prolific_offence_share: float | None  # None when nobody has an offence in 12 months
    release_watch: int
    panel_included: int = 0  # priority members by the panel's accept (in force)
    panel_excluded: int = 0  # people the panel's reject (in force) kept out of both cohorts

    def to_dict(self) -> dict:
        """The manifest's `counts.stats`: every field by name, in field order."""
        return asdict(self)


@dataclass
class Selection:
    ranked: pl.DataFrame  # every scored person, in rank order, with the selection columns
    release_watch: pl.DataFrame  # in custody, release due, would reach min_score on release
    stats: SelectionStats


# Eligible first, then by these (score and offences descending, the rest ascending).
RANK_ORDER = ["score", "offences_12m", "days_since_last_offence", "person_key"]
NO_AREA = "(no area)"


def _capacity_expr(rules: RuleSet) -> pl.Expr:
    cohorts = rules.cohorts
    if not cohorts.capacity:
        return pl.lit(cohorts.default_capacity, dtype=pl.Int64)
    return pl.col("area").replace_strict(cohorts.capacity, default=cohorts.default_capacity, return_dtype=pl.Int64)


def _person_ordinal(keys: pl.DataFrame) -> pl.Expr:
    """person_key as an integer of the same order: the row number when the frame is already in
    person_key order (compute_features' default); else the key's 12 hex digits as a number when
    every key has the linker's form (PERSON_KEY_PATTERN), far cheaper than ranking the text;
    else the ordinal rank of the text."""
    person_key = keys.get_column("person_key")
    if person_key.is_sorted():
        return pl.col("_row").cast(pl.Int64).alias("_person_ordinal")
    if person_key.null_count() == 0 and person_key.str.contains(PERSON_KEY_PATTERN).all():
        return pl.col("person_key").str.slice(1).str.to_integer(base=16).alias("_person_ordinal")
    return pl.col("person_key").rank("ordinal").cast(pl.Int64).alias("_person_ordinal")


def _rank_sort_keys(keys: pl.DataFrame) -> list[pl.Expr]:
    """Ascending sort keys for: eligible first, score desc, offences_12m desc,
    days_since_last_offence asc (unknown last), person_key asc; the ineligible by person_key
    alone (they have no rank; the panel looks them up by key).

    Integer keys sort far faster than several columns, so the first four are packed into one
    Int64 (`pipeline.keys.RANK_KEY`) when their values fit its budgets (they always do in
    practice); else plain keys, in the same order.
    """
    def bounds(column: str) -> tuple[int, int]:
        values = keys.get_column(column)
        return int(values.min() or 0), int(values.max() or 0)

    days_lo, days_hi = bounds("days_since_last_offence")
    no_offence = RANK_KEY.limit("days_since_last_offence") - 1
    fits = (
        RANK_KEY.fits("score", *bounds("score"))
        and RANK_KEY.fits("offences_12m", *bounds("offences_12m"))
        and RANK_KEY.fits("days_since_last_offence", days_lo, days_hi + 1)  # the top value: "no offence"
    )
    if not fits:
        when_eligible = pl.when(pl.col("eligible"))
        return [
            ~pl.col("eligible"), when_eligible.then(-pl.col("score")), when_eligible.then(-pl.col("offences_12m")),
            when_eligible.then(pl.col("days_since_last_offence").fill_null(2**62)), pl.col("_person_ordinal"),
        ]
    packed = (
        pl.when(pl.col("eligible"))
        .then(RANK_KEY.pack(
            score=RANK_KEY.descending("score", pl.col("score")),
            offences_12m=RANK_KEY.descending("offences_12m", pl.col("offences_12m")),
            days_since_last_offence=pl.col("days_since_last_offence").fill_null(no_offence),
        ))
        .otherwise(RANK_KEY.sentinel)
    )
    return [packed, pl.col("_person_ordinal")]


PANEL_EFFECTS = ("panel_include", "panel_exclude", "panel_cohort_type", "panel_note")


def _rank(scored: pl.DataFrame, rules: RuleSet, panel: pl.DataFrame | None = None) -> pl.DataFrame:
    cohorts = rules.cohorts
    # Order and selection are worked out on the few columns they need, then the wide frame is
    # gathered once in rank order.
    keys = scored.select("eligible", *RANK_ORDER, "area", "neighbourhood_12m", "ineligible_reason").with_row_index(
        "_row"
    )
    keys = keys.with_columns(_person_ordinal(keys)).sort(_rank_sort_keys(keys), descending=False)
    if panel is not None:
        keys = keys.join(panel, on="person_key", how="left", maintain_order="left").with_columns(
            pl.col("panel_include").fill_null(False) & pl.col("eligible"), pl.col("panel_exclude").fill_null(False))
    area_key = pl.col("area").fill_null(NO_AREA)
    eligible = pl.col("eligible")
    keys = keys.with_columns(
        pl.when(eligible).then(eligible.cast(pl.Int64).cum_sum()).otherwise(None).alias("rank"),
        pl.when(eligible).then(eligible.cast(pl.Int64).cum_sum().over(area_key)).otherwise(None).alias("area_rank"),
        _capacity_expr(rules).alias("_capacity"),
    )
    super_prolific = eligible & (pl.col("offences_12m") >= cohorts.super_prolific_min_offences_12m)
    if panel is None:
        priority = eligible & (pl.col("score") >= cohorts.min_score) & (pl.col("area_rank") <= pl.col("_capacity"))
    else:
        # Includes take their area's places first; the ranked fill what is left, skipping the rejected.
        include, exclude = pl.col("panel_include"), pl.col("panel_exclude")
        candidate = eligible & ~include & ~exclude & (pl.col("score") >= cohorts.min_score)
        keys = keys.with_columns(
            candidate.cast(pl.Int64).cum_sum().over(area_key).alias("_fill_rank"),
            include.cast(pl.Int64).sum().over(area_key).alias("_included"),
        )
        priority = include | (candidate & (pl.col("_fill_rank") <= pl.col("_capacity") - pl.col("_included")))
        super_prolific = super_prolific & ~exclude
    keys = keys.with_columns(priority.fill_null(False).alias("priority"), super_prolific.fill_null(False)
                             .alias("super_prolific"))
    member = pl.col("priority") | pl.col("super_prolific")
    note = pl.when(~eligible).then(pl.lit("not eligible: ") + pl.col("ineligible_reason"))
    if panel is not None:
        note = note.when(pl.col("panel_include") | pl.col("panel_exclude")).then(pl.col("panel_note"))
    note = (
        note.when(pl.col("priority")).then(pl.lit(None, dtype=pl.Utf8))
        .when(pl.col("score") < cohorts.min_score).then(pl.lit(f"below minimum score {cohorts.min_score}"))
        .otherwise(pl.lit("area capacity ") + pl.col("_capacity").cast(pl.Utf8) + pl.lit(" reached"))
    )
    rule_type = pl.when(pl.col("neighbourhood_12m") >= cohorts.fixed_min_neighbourhood_12m) \
        .then(pl.lit("Fixed")).otherwise(pl.lit("Flex"))
    if panel is not None:
        rule_type = pl.coalesce(pl.when(pl.col("panel_include")).then(pl.col("panel_cohort_type")), rule_type)
    keys = keys.with_columns(
        pl.when(member).then(rule_type).otherwise(pl.lit(None, dtype=pl.Utf8)).alias("cohort_type"),
        note.alias("selection_note"),
    )
    # With a panel, its other columns (the decision columns of the scores) follow the selection's own.
    shown = [c for c in panel.columns if c not in PANEL_EFFECTS and c != "person_key"] if panel is not None else []
    added = keys.select("rank", "area_rank", "priority", "super_prolific", "cohort_type", "selection_note",
                        *(("panel_include", "panel_exclude") if panel is not None else ()), *shown)
    return scored[keys.get_column("_row")].hstack(added)


def _release_watch(scored: pl.DataFrame, rules: RuleSet) -> pl.DataFrame:
    due = scored.filter(pl.col("in_custody") & pl.col("release_due_90d"))
    columns = ["person_key", "area", "custody_type_at_d", "expected_release_date", "days_until_release",
               "score", "score_if_released", "reasons_if_released"]
    if due.height == 0:
        return pl.DataFrame(schema={
            "person_key": pl.Utf8, "area": pl.Utf8, "custody_type_at_d": pl.Utf8, "expected_release_date": pl.Date,
            "days_until_release": pl.Int64, "score": pl.Int64, "score_if_released": pl.Int64,
            "reasons_if_released": pl.Utf8,
        })
    feature_columns = [c for c in due.columns if c not in SCORE_COLUMNS and not c.startswith("points_")]
    # As if released at D: out of custody, released today.
    released = due.select(feature_columns).with_columns(
        pl.lit(False).alias("in_custody"),
        pl.lit(False).alias("release_due_90d"),
        pl.lit(None, dtype=pl.Utf8).alias("custody_type_at_d"),
        pl.lit(None, dtype=pl.Date).alias("expected_release_date"),
        pl.lit(None, dtype=pl.Int64).alias("days_until_release"),
        pl.lit(0, dtype=pl.Int64).alias("days_since_release"),
    )
    rescored = score(released, rules).select(
        "person_key", "eligible", pl.col("score").alias("score_if_released"),
        pl.col("reasons").alias("reasons_if_released"),
    )
    watch = (
        due.select("person_key", "area", "custody_type_at_d", "expected_release_date", "days_until_release", "score")
        .join(rescored, on="person_key", how="inner")
        .filter(pl.col("eligible") & (pl.col("score_if_released") >= rules.cohorts.min_score))
    )
    return watch.sort(["score_if_released", "person_key"], descending=[True, False]).select(columns)


def _stats(ranked: pl.DataFrame, watch: pl.DataFrame, rules: RuleSet) -> SelectionStats:
    cohorts = rules.cohorts
    eligible = ranked.filter(pl.col("eligible"))
    area_key = pl.col("area").fill_null(NO_AREA)
    per_area = (
        eligible.group_by(area_key.alias("area"))
        .agg(
            pl.len().alias("eligible"),
            (pl.col("score") >= cohorts.min_score).sum().alias("reaching_min_score"),
            pl.col("priority").sum().alias("selected"),
            pl.col("super_prolific").sum().alias("super_prolific"),
        )
        .sort("area")
    )
    priority_by_area = {
        row["area"]: AreaStats(
            selected=int(row["selected"]),
            capacity=cohorts.capacity_of(None if row["area"] == NO_AREA else row["area"]),
            eligible=int(row["eligible"]),
            reaching_min_score=int(row["reaching_min_score"]),
            super_prolific=int(row["super_prolific"]),
        )
        for row in per_area.iter_rows(named=True)
    }
    ineligible = (
        ranked.filter(~pl.col("eligible")).group_by("ineligible_reason").len().sort("ineligible_reason")
    )
    total_12m = int(ranked.get_column("offences_12m").sum() or 0)
    sp_12m = int(ranked.filter(pl.col("super_prolific")).get_column("offences_12m").sum() or 0)
    return SelectionStats(
        assessed=ranked.height,
        eligible=eligible.height,
        ineligible={r: int(n) for r, n in ineligible.iter_rows()},
        priority=int(ranked.get_column("priority").sum()),
        priority_by_area=priority_by_area,
        min_score=cohorts.min_score,
        super_prolific=int(ranked.get_column("super_prolific").sum()),
        super_prolific_offences_12m=sp_12m,
        offences_12m=total_12m,
        super_prolific_offence_share=(sp_12m / total_12m) if total_12m else None,
        release_watch=watch.height,
        panel_included=int(ranked.get_column("panel_include").sum()) if "panel_include" in ranked.columns else 0,
        panel_excluded=int(ranked.get_column("panel_exclude").sum()) if "panel_exclude" in ranked.columns else 0,
    )


def select_cohorts(scored: pl.DataFrame, rules: RuleSet, panel: pl.DataFrame | None = None) -> Selection:
    """Rank eligible people, fill each area's priority cohort up to its capacity, flag the
    super-prolific, type members Fixed or Flex, and list custody leavers worth preparing for.

    `panel`: the panel's decisions in force (`pipeline.decisions.panel_at`): person_key, the
    PANEL_EFFECTS columns, and any others, which are added to the ranked frame as they are."""
    ranked = _rank(scored, rules, panel)
    watch = _release_watch(scored, rules)
    stats = _stats(ranked, watch, rules)
    if panel is not None:
        ranked = ranked.drop("panel_include", "panel_exclude")
    log.info("selected %d priority and %d super-prolific of %d eligible", stats.priority, stats.super_prolific,
             stats.eligible)
    return Selection(ranked, watch, stats)

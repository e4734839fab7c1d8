"""The panel's decisions in selection: accepted people kept in the priority cohort (typed as the
panel said, taking their area's places first), rejected people in neither cohort, ranks and
everyone else's selection as the rules made them; no decision, no change."""

from __future__ import annotations

import polars as pl
from builders import feature_frame, feature_row
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from rules.schema import DEFAULT_RULES, parse_rules
from rules.score import score
from rules.select import select_cohorts

# The hand-computed points below (45, 35, 32) are those of rule set 1.0.0, kept as an example.
RULES_1_0_0 = DEFAULT_RULES.parent / "examples" / "default-1.0.0.toml"


def rules_with(default_capacity: int, min_score: int, source=DEFAULT_RULES):
    text = source.read_text(encoding="utf-8").replace(
        "default_capacity = 40", f"default_capacity = {default_capacity}").replace(
        "min_score = 30", f"min_score = {min_score}")
    from pathlib import Path

    return parse_rules(text.encode("utf-8"), Path("rules.toml"))


def panel(rows: list[tuple[str, str]]) -> pl.DataFrame:
    """(person_key, 'accept' | 'reject') -> the frame pipeline.decisions.panel_at makes."""
    schema = {"person_key": pl.Utf8, "panel_include": pl.Boolean, "panel_exclude": pl.Boolean,
              "panel_cohort_type": pl.Utf8, "panel_note": pl.Utf8, "decision": pl.Utf8}
    return pl.DataFrame([
        {"person_key": k, "panel_include": d == "accept", "panel_exclude": d == "reject",
         "panel_cohort_type": "Free" if d == "accept" else None, "panel_note": f"{d}ed by the panel", "decision": d}
        for k, d in rows], schema=schema)


PEOPLE = st.lists(st.tuples(st.sampled_from(["A", "B", None]), st.integers(0, 14),
                            st.one_of(st.none(), st.integers(0, 400)), st.booleans()), min_size=1, max_size=40)


def frame_of(people) -> pl.DataFrame:
    return score(feature_frame([
        feature_row(person_key=f"P{i:03d}", area=area, offences_12m=n, days_since_last_offence=days, deceased=dead)
        for i, (area, n, days, dead) in enumerate(people)]), RULES)


RULES = rules_with(40, 30)


@settings(max_examples=40, deadline=None)
@given(people=PEOPLE, capacity=st.integers(0, 6), min_score=st.integers(0, 50))
def test_no_decision_changes_nothing(people, capacity, min_score):
    rules = rules_with(capacity, min_score)
    scored = frame_of(people)
    plain = select_cohorts(scored, rules)
    empty = select_cohorts(scored, rules, panel([]))
    assert_frame_equal(empty.ranked.drop("decision"), plain.ranked)
    assert empty.stats == plain.stats


@settings(max_examples=80, deadline=None)
@given(people=PEOPLE, capacity=st.integers(0, 6), min_score=st.integers(0, 50), data=st.data())
def test_includes_take_places_first_rejects_are_out_and_the_rest_follow_rank(people, capacity, min_score, data):
    rules = rules_with(capacity, min_score)
    scored = frame_of(people)
    keys = scored["person_key"].to_list()
    chosen = data.draw(st.lists(st.tuples(st.sampled_from(keys), st.sampled_from(["accept", "reject"])),
                                unique_by=lambda t: t[0], max_size=len(keys)))
    decided = dict(chosen)
    plain = select_cohorts(scored, rules).ranked
    ranked = select_cohorts(scored, rules, panel(chosen)).ranked
    # ranks are the rules' own
    assert_frame_equal(ranked.select("person_key", "rank", "area_rank"), plain.select("person_key", "rank", "area_rank"))
    rows = {r["person_key"]: r for r in ranked.to_dicts()}
    for key, d in decided.items():
        row = rows[key]
        assert row["decision"] == d  # the panel's columns are carried into the scores
        if not row["eligible"]:  # not eligible is the first reason, whatever the panel said
            assert not row["priority"] and row["selection_note"].startswith("not eligible")
        elif d == "reject":
            assert not row["priority"] and not row["super_prolific"] and row["selection_note"] == "rejected by the panel"
        else:
            assert row["priority"] and row["cohort_type"] == "Free" and row["selection_note"] == "accepted by the panel"
    for _, group in ranked.group_by(pl.col("area").fill_null("-")):
        included = [r for r in group.to_dicts() if decided.get(r["person_key"]) == "accept" and r["eligible"]]
        # the ranked fill: eligible, reaching the minimum score, undecided, in rank order
        candidates = [r for r in group.sort("rank", nulls_last=True).to_dicts()
                      if r["eligible"] and r["score"] >= min_score and r["person_key"] not in decided]
        places = max(capacity - len(included), 0)
        expected = {r["person_key"] for r in included} | {r["person_key"] for r in candidates[:places]}
        assert set(group.filter(pl.col("priority"))["person_key"].to_list()) == expected


def test_an_accepted_person_below_the_line_is_in_and_the_last_ranked_gives_way():
    rules = rules_with(2, 30, RULES_1_0_0)
    g3 = {"seriousness_max_36m": 3}
    scored = score(feature_frame([
        feature_row(person_key="P1", area="A", offences_12m=7, days_since_last_offence=10, **g3),  # 45
        feature_row(person_key="P2", area="A", offences_12m=4, days_since_last_offence=10, **g3),  # 35
        feature_row(person_key="P3", area="A", offences_12m=4, days_since_last_offence=60, **g3),  # 32
        feature_row(person_key="P4", area="A", offences_12m=0),  # 0: below the minimum score
    ]), rules)
    assert select_cohorts(scored, rules).ranked.filter(pl.col("priority"))["person_key"].to_list() == ["P1", "P2"]
    result = select_cohorts(scored, rules, panel([("P4", "accept"), ("P1", "reject")]))
    ranked = result.ranked
    assert ranked.filter(pl.col("priority"))["person_key"].to_list() == ["P2", "P4"]
    note = dict(zip(ranked["person_key"], ranked["selection_note"], strict=True))
    assert note["P3"] == "area capacity 2 reached" and note["P1"] == "rejected by the panel"
    assert result.stats.priority == 2 and result.stats.panel_included == 1 and result.stats.panel_excluded == 1
    assert result.stats.priority_by_area["A"].selected == 2

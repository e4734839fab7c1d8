"""Packed keys (`pipeline.keys`): every layout round-trips in Polars and in DuckDB, orders as its
fields do, and refuses values outside its budgets instead of clamping them."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import polars as pl
import pytest
from builders import build_warehouse, nominal, offence
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.facts import check_key_budgets
from pipeline.keys import (
    DAY_ZERO,
    LAST_DAY,
    LAYOUTS,
    RANK_KEY,
    SANCTION_KEY,
    SERIOUS_KEY,
    KeyBudgetError,
    KeyLayout,
    check_days,
    code_in_key,
    code_tie,
    day_date_sql,
    day_number,
    day_number_sql,
)


@st.composite
def layout_values(draw):
    layout = draw(st.sampled_from(LAYOUTS))
    values = [{name: draw(st.integers(0, 2**bits - 1)) for name, bits in layout.fields} for _ in range(2)]
    return layout, values


def _by_hand(layout: KeyLayout, values: dict) -> int:
    """The key read independently: each field in its own bits, most significant first."""
    key = 0
    for name, bits in layout.fields:
        key = (key << bits) | values[name]
    return key


@settings(max_examples=200, deadline=None)
@given(layout_values())
def test_every_layout_round_trips_in_polars_and_orders_as_its_fields(drawn):
    layout, values = drawn
    frame = pl.DataFrame({name: [v[name] for v in values] for name, _ in layout.fields}, schema_overrides={
        name: pl.Int64 for name, _ in layout.fields})
    keys = frame.select(layout.pack(**{name: pl.col(name) for name, _ in layout.fields}).alias("key"))["key"]
    assert keys.to_list() == [_by_hand(layout, v) for v in values]
    assert all(0 <= k < layout.sentinel for k in keys)
    for name, _ in layout.fields:
        decoded = keys.to_frame().select(layout.unpack(pl.col("key"), name))["key"].to_list()
        assert decoded == [v[name] for v in values]
    fields = [tuple(v[name] for name, _ in layout.fields) for v in values]
    assert (keys[0] < keys[1]) == (fields[0] < fields[1])


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(layout_values())
def test_every_layout_round_trips_in_duckdb_as_in_polars(drawn):
    layout, values = drawn
    con = duckdb.connect()
    try:
        for v in values:
            params = {name: v[name] for name, _ in layout.fields}
            packed = layout.sql(**{name: f"${name}::BIGINT" for name in params})
            decoded = ", ".join(layout.unpack_sql("key", name) for name in params)
            row = con.execute(f"SELECT key, {decoded} FROM (SELECT {packed} AS key)", params).fetchone()
            assert row[0] == _by_hand(layout, v)
            assert list(row[1:]) == list(params.values())
    finally:
        con.close()


@given(st.integers(0, 2**22 - 1), st.integers(0, 2**22 - 1))
def test_code_tie_prefers_the_lowest_code_and_decodes_back(low, high):
    low, high = min(low, high), max(low, high)
    frame = pl.DataFrame({"code": [low, high]}).with_columns(
        SANCTION_KEY.pack(outcome_day=pl.lit(5), code_tie=code_tie(pl.col("code"))).alias("key"))
    assert frame.select(code_in_key(pl.col("key")).alias("code"))["code"].to_list() == [low, high]
    assert frame["key"].max() == frame["key"][0]  # a max() picks the lower code


@pytest.mark.slow
@given(st.dates(DAY_ZERO, LAST_DAY))
def test_day_numbers_round_trip_in_duckdb(day):
    con = duckdb.connect()
    try:
        number, back = con.execute(f"SELECT {day_number_sql('$d')}, {day_date_sql(day_number_sql('$d'))}",
                                   {"d": day}).fetchone()
    finally:
        con.close()
    assert number == day_number(day) == (day - date(1800, 1, 1)).days
    assert back == day


def test_a_missing_date_is_day_zero():
    con = duckdb.connect()
    try:
        assert con.execute(f"SELECT {day_number_sql('NULL::DATE')}").fetchone()[0] == 0
    finally:
        con.close()


@pytest.mark.parametrize(("field", "low", "high"), [
    ("code_tie", 0, 2**22),  # one code more than the field holds
    ("offence_day", -1, 10),
    ("outcome_day", 0, 2**19),
])
def test_an_over_budget_value_raises_and_names_the_field(field, low, high):
    with pytest.raises(KeyBudgetError, match=f"{field} field of sanction_key"):
        SANCTION_KEY.check(field, low, high, "values")
    SANCTION_KEY.check(field, 0, SANCTION_KEY.limit(field) - 1, "values")  # the full budget is fine


def test_rank_key_budgets_fit_and_refuse_as_the_sort_expects():
    assert RANK_KEY.fits("score", 0, 2**21 - 1) and not RANK_KEY.fits("score", 0, 2**21)
    assert not RANK_KEY.fits("offences_12m", -1, 3)


@pytest.mark.parametrize("day", [DAY_ZERO - timedelta(days=1), LAST_DAY + timedelta(days=1)])
def test_a_date_outside_the_day_budget_raises(day):
    with pytest.raises(KeyBudgetError, match="offence_facts.offence_date"):
        check_days("offence_facts.offence_date", min(day, DAY_ZERO), max(day, DAY_ZERO))
    check_days("offence_facts.offence_date", DAY_ZERO, LAST_DAY)
    check_days("offence_facts.offence_date", None, None)  # no rows


def test_a_layout_wider_than_a_bigint_is_refused():
    with pytest.raises(ValueError, match="do not fit a BIGINT"):
        KeyLayout("too_wide", (("a", 32), ("b", 32)))
    assert SERIOUS_KEY.bits <= 63


def test_a_date_before_the_day_budget_is_quarantined_and_the_link_still_refuses_one(tmp_path):
    # Dated 1799: validation quarantines it (date_too_early), so the facts' day fields never see it.
    offences = [offence("X1", "N1", date(1799, 12, 31)), offence("X2", "N1", date(2026, 1, 5))]
    con = build_warehouse(tmp_path, nominals=[nominal("N1")], offences=offences, expect_no_rejects=False)
    rejected = con.execute("SELECT column_name, reason_code FROM rejects").fetchall()
    assert ("offence_date", "date_too_early") in rejected
    assert con.execute("SELECT count(*) FROM offence_facts").fetchone()[0] == 1
    # Should one reach the facts all the same, the budget check stops the link.
    con.execute("UPDATE offence_facts SET offence_date = DATE '1799-12-31'")
    with pytest.raises(KeyBudgetError, match="offence_facts.offence_date"):
        check_key_budgets(con)

"""The one formula-injection rule (pipeline.safe_cells), for CSV and XLSX alike."""

from __future__ import annotations

import csv

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from pipeline.safe_cells import is_formula_like, neutralise, safe_frame, write_safe_csv

ATTACKS = ['=HYPERLINK("http://example.invalid","x")', "+SUM(1,2)", "@SUM(A1)", "-2+3", "-cmd|'/c calc'!A0",
           "\t=1+1", "\r=1+1", "=1"]


def test_every_known_attack_gets_a_leading_apostrophe():
    for value in ATTACKS:
        assert neutralise(value) == "'" + value


def test_a_name_starting_with_a_dash_is_prefixed_but_a_negative_number_is_left_alone():
    assert neutralise("-Smith") == "'-Smith"
    assert neutralise("-") == "'-"
    assert neutralise("-12") == "-12"
    assert neutralise("-3.5") == "-3.5"
    assert neutralise("-3.5e2") == "'-3.5e2"  # not a plain number: treated as formula-like


def test_ordinary_values_and_non_text_are_unchanged():
    for value in ("Smith", "O'Neil", "Smith-Jones", " =not first", "X123456", "24/1191649K", ""):
        assert neutralise(value) == value
    assert neutralise(12) == 12
    assert neutralise(None) is None


@given(st.text(max_size=30))
def test_polars_expression_and_python_function_agree(value):
    frame = pl.DataFrame({"v": [value]})
    assert safe_frame(frame).item() == neutralise(value)


@given(st.text(max_size=30))
def test_a_neutralised_value_is_never_formula_like_and_keeps_the_original_text(value):
    safe = neutralise(value)
    assert not is_formula_like(safe)
    assert safe.removeprefix("'") == value or safe == value


def test_csv_written_by_the_rule_reads_back_inert(tmp_path):
    frame = pl.DataFrame({"name": ATTACKS + ["-Smith", "Smith"], "n": list(range(len(ATTACKS) + 2))})
    path = tmp_path / "out.csv"
    write_safe_csv(frame, path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows[:len(ATTACKS)]] == ["'" + a for a in ATTACKS]
    assert rows[-2]["name"] == "'-Smith" and rows[-1]["name"] == "Smith"
    assert [int(r["n"]) for r in rows] == list(range(len(ATTACKS) + 2))

"""Each validator: a good value passes, a bad one is quarantined with the right reason code."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from pipeline.contract import EXTRACTS
from pipeline.errors import InputFileError
from pipeline.identifiers import PNC_CHECK_ALPHABET, pnc_check_letter, pnc_is_valid, pnc_normal_form
from pipeline.validate import LINE, ParseOptions, build_schema, normalise, validate_batch

OPTIONS = ParseOptions(extract_date=date(2026, 11, 1), date_formats=("%d/%m/%Y",))


def run(name: str, **values) -> tuple[pl.DataFrame, pl.DataFrame]:
    extract = EXTRACTS[name]
    row = {c.name: c.example or None for c in extract.columns}
    row.update(values)
    frame = pl.DataFrame([row], schema={c: pl.Utf8 for c in extract.column_names}).with_columns(
        pl.lit(2, dtype=pl.Int64).alias(LINE)
    )
    return validate_batch(normalise(frame, extract), extract, build_schema(extract, OPTIONS), OPTIONS)


def reasons(failures: pl.DataFrame) -> set[tuple[str, str]]:
    return set(zip(failures["column_name"], failures["reason_code"], strict=True))


def test_contract_examples_are_valid_rows():
    for name in EXTRACTS:
        good, failures = run(name)
        assert failures.height == 0, (name, failures.to_dicts())
        assert good.height == 1


def test_pnc_check_letter_matches_the_published_examples():
    # Worked by hand: 02 followed by 0073319 is 20073319; 20073319 mod 23 = 0 -> 'Z'.
    assert 20073319 % 23 == 0 and PNC_CHECK_ALPHABET[0] == "Z"
    assert pnc_check_letter(2, 73319) == "Z"
    assert pnc_is_valid("2002/0073319Z")
    # 12/394773H: 120394773 mod 23 = 8 -> 'H' (Z A B C D E F G H).
    assert 120394773 % 23 == 8
    assert pnc_is_valid("12/394773H")
    assert not pnc_is_valid("12/394773J")
    assert pnc_normal_form("2012/394773H") == pnc_normal_form("12/0394773H") == "12/0394773H"


@pytest.mark.parametrize(
    ("name", "column", "value", "reason"),
    [
        ("police_nominals", "pnc_id", "12/394773J", "bad_check_letter"),
        ("police_nominals", "pnc_id", "PNC-12345", "bad_format"),
        ("police_nominals", "cro_number", "12345", "bad_format"),
        ("police_nominals", "surname", None, "missing_required"),
        ("police_nominals", "surname", "   ", "missing_required"),
        ("police_nominals", "date_of_birth", "31/02/1990", "unparseable_date"),
        ("police_nominals", "date_of_birth", "01/01/2020", "age_out_of_range"),
        ("police_nominals", "date_of_birth", "01/01/1900", "age_out_of_range"),
        ("police_nominals", "date_of_birth", "02/11/2026", "future_date"),
        ("police_nominals", "sex", "Bloke", "not_allowed_value"),
        ("police_nominals", "police_person_id", "N 12", "bad_format"),
        ("police_nominals", "surname", "X" * 81, "too_long"),
        ("police_offences", "offence_date", "2026-11-02", "future_date"),
        ("police_offences", "ho_offence_code", "burglary", "bad_format"),
        ("police_offences", "offence_date", "0221-03-04", "date_too_early"),  # a keying slip for 2021
        ("prison_custody", "reception_date", "1799-12-31", "date_too_early"),
        ("police_offences", "outcome", "arrested", "not_allowed_value"),
        ("police_offences", "recorded_date", "2026-09-01", "date_order"),
        ("probation_cases", "crn", "X12345", "bad_format"),
        ("probation_cases", "nomis_id", "12345AB", "bad_format"),
        ("probation_cases", "ogrs3_2yr", "101", "out_of_range"),
        ("probation_cases", "ogrs3_2yr", "high", "not_a_number"),
        ("probation_cases", "mappa_level", "5", "out_of_range"),
        ("probation_cases", "supervision_end", "2026-01-01", "date_order"),
        ("probation_events", "event_type", "arrest", "not_allowed_value"),
        ("prison_custody", "release_date", "2026-05-01", "date_order"),
        ("prison_custody", "sentence_days", "-3", "out_of_range"),
    ],
)
def test_each_validator_quarantines_with_its_reason(name, column, value, reason):
    good, failures = run(name, **{column: value})
    assert good.height == 0
    assert (column, reason) in reasons(failures)
    own = failures.filter((pl.col("column_name") == column) & (pl.col("reason_code") == reason))
    assert own["message"].str.starts_with(column).all()


@pytest.mark.parametrize(("keyed", "stored"), [
    ("028/01", "028/01"), ("28/1", "028/01"), ("028-01", "028/01"), (" 028.01 ", "028/01"), ("8a/3", "008A/03"),
    ("TH68010", "TH68010"),  # a CJS offence code
    ("f123456", "F123456"),  # a force's or another jurisdiction's own code, mapped by the offence reference
])
def test_offence_codes_in_home_office_local_or_cjs_form_are_kept(keyed, stored):
    good, failures = run("police_offences", ho_offence_code=keyed)
    assert failures.height == 0, failures.to_dicts()
    assert good["ho_offence_code"][0] == stored


@pytest.mark.parametrize("keyed", ["burglary", "X", "/12", "028 01", "A" * 10 + "1" * 7])
def test_an_offence_code_with_no_digit_or_odd_characters_or_too_long_is_quarantined(keyed):
    good, failures = run("police_offences", ho_offence_code=keyed)
    assert good.height == 0 and failures["column_name"].to_list() == ["ho_offence_code"]


@pytest.mark.parametrize(("keyed", "stored"), [("Male", "M"), ("female", "F"), ("Not known", "U"), ("m", "M"), ("Other", "X")])
def test_sex_in_words_is_read_as_its_code_without_configuration(keyed, stored):
    good, failures = run("police_nominals", sex=keyed)
    assert failures.height == 0 and good["sex"][0] == stored


def _normalised_with(name: str, values: dict, **row) -> tuple[pl.DataFrame, pl.DataFrame]:
    extract = EXTRACTS[name]
    full = {c.name: c.example or None for c in extract.columns} | row
    frame = pl.DataFrame([full], schema={c: pl.Utf8 for c in extract.column_names}).with_columns(
        pl.lit(2, dtype=pl.Int64).alias(LINE))
    return validate_batch(normalise(frame, extract, values), extract, build_schema(extract, OPTIONS), OPTIONS)


def test_a_coded_column_in_a_forces_own_words_maps_to_the_canonical_values():
    values = {"outcome": {"Charged/Summonsed": "charged", "NFA - evidential": "nfa"}}
    for keyed, stored in (("charged/summonsed", "charged"), (" NFA - evidential ", "nfa"),
                          ("Cautioned", "cautioned")):  # a canonical value needs no mapping
        good, failures = _normalised_with("police_offences", values, outcome=keyed)
        assert failures.height == 0 and good["outcome"][0] == stored, (keyed, failures.to_dicts())
    good, failures = _normalised_with("police_offences", values, outcome="Arrested")  # unmapped: quarantined
    assert good.height == 0 and failures["reason_code"].to_list() == ["not_allowed_value"]
    assert failures["value"].to_list() == ["arrested"]


@pytest.mark.parametrize(("column", "mapping", "needle"), [
    ("surname", {"A": "B"}, "'surname' is not a coded column of police_offences"),
    ("outcome", {"Charged/Summonsed": "prosecuted"}, "maps to 'prosecuted', which is not a value of outcome"),
])
def test_a_bad_value_mapping_is_refused_naming_the_table_and_the_values_allowed(tmp_path, column, mapping, needle):
    from pydantic import ValidationError

    from pipeline.config import Config

    with pytest.raises(ValidationError) as info:
        Config(path=tmp_path / "iom.toml", extracts={"police_offences": {
            "file": "o.csv", "values": {column: mapping}}})
    message = str(info.value)
    assert f"[extracts.police_offences.values.{column}]" in message and needle in message


def test_date_order_message_names_both_dates():
    _, failures = run("prison_custody", release_date="2026-05-01")
    assert "release_date value '2026-05-01' is before reception_date" in failures["message"].to_list()


def test_planned_dates_may_be_in_the_future():
    good, failures = run("prison_custody", expected_release_date="2030-01-01")
    assert failures.height == 0 and good.height == 1


def test_normalisation_keeps_meaning_and_types_are_cast():
    good, failures = run("police_offences", outcome=" Charged ", offence_date="03/09/2026", area=" Northgate ")
    assert failures.height == 0
    assert good["outcome"][0] == "charged"
    assert good["offence_date"][0] == date(2026, 9, 3)
    assert good["area"][0] == "Northgate"


def test_every_failure_of_a_row_is_reported_not_just_the_first():
    _, failures = run("police_nominals", surname=None, sex="Bloke", pnc_id="12/394773J")
    assert {r for _, r in reasons(failures)} >= {"missing_required", "not_allowed_value", "bad_check_letter"}
    assert failures[LINE].unique().to_list() == [2]


def test_a_whole_column_failure_stops_the_batch_naming_file_and_column():
    # A failure with no row index (here a column that is not text) is no row's fault: it must not
    # be dropped, letting every row through; it stops the batch.
    extract = EXTRACTS["police_nominals"]
    row = {c.name: c.example or None for c in extract.columns}
    frame = pl.DataFrame([row], schema={c: pl.Utf8 for c in extract.column_names}).with_columns(
        pl.lit(2, dtype=pl.Int64).alias(LINE), pl.lit(7, dtype=pl.Int64).alias("surname"))
    with pytest.raises(InputFileError) as error:
        validate_batch(frame, extract, build_schema(extract, OPTIONS), OPTIONS, "nominals_nov.csv")
    assert "nominals_nov.csv" in error.value.message and "column surname" in error.value.message
    assert error.value.hint

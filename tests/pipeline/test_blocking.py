"""Blocking for the probabilistic step (issue 14): Soundex keys, the pairs a block generates, the
pair budget that decides which extra blocks are used; and, through the real ingest, a duplicate
within one agency and a copy with both a name and its date corrupted."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pytest
from builders import example_row, person_keys_by_record
from builders import write_workspace as make_workspace

from pipeline.link.blocking import (
    ACROSS,
    CORE_BLOCKS,
    EXTRA_BLOCKS,
    WITHIN,
    Block,
    block_pairs,
    blocking_rules,
    choose_blocks,
    default_blocks,
    soundex_sql,
)
from pipeline.link.probabilistic import _RECORDS
from pipeline.workspace import ingest_workspace


@pytest.mark.parametrize(("name", "code"), [
    # the American Soundex examples of the US National Archives' rules
    ("ROBERT", "R163"), ("RUPERT", "R163"), ("RUBIN", "R150"), ("ASHCRAFT", "A261"), ("ASHCROFT", "A261"),
    ("TYMCZAK", "T522"), ("PFISTER", "P236"), ("HONEYMAN", "H555"), ("LEE", "L000"), (None, None),
])
def test_soundex_follows_the_standard_rules(name, code):
    con = duckdb.connect()
    assert con.execute(f"SELECT {soundex_sql('x')} FROM (SELECT ?::VARCHAR AS x)", [name]).fetchone()[0] == code


def _prob_records(rows: list[tuple], sources: list[str] | None = None) -> duckdb.DuckDBPyConnection:
    """`prob_records` as the link builds it, from (surname, forename, date of birth, pnc) rows, each
    record its own component (a PNC id makes its component closed)."""
    con = duckdb.connect()
    con.execute("""CREATE TEMP TABLE id_records (rid UBIGINT, record_id VARCHAR, source VARCHAR, pnc_norm VARCHAR,
                   nomis VARCHAR, surname_n VARCHAR, forename_n VARCHAR, date_of_birth DATE, sex VARCHAR, area VARCHAR)""")
    sources = sources or ["probation"] * len(rows)
    con.executemany("INSERT INTO id_records VALUES (?, ?, ?, ?, NULL, ?, ?, ?, NULL, NULL)",
                    [(i, f"{sources[i]}:X{i:06d}", sources[i], pnc, s, f, d) for i, (s, f, d, pnc) in enumerate(rows)])
    con.execute("CREATE TEMP TABLE linked AS SELECT rid, rid AS final_label, pnc_norm FROM id_records")
    con.execute(_RECORDS)
    return con


SAME_NAMES = [("SMITH", "ALEX", date(1950, 1, 1) + timedelta(days=37 * i), None) for i in range(40)]


def test_a_block_counts_the_pairs_it_would_compare():
    names = next(b for b in EXTRA_BLOCKS if b.keys == ("names_key",))
    # all of one agency: 40 records of one name, every pair within the agency
    assert block_pairs(_prob_records(SAME_NAMES), names) == (0, 40 * 39 // 2)
    # records of components holding a PNC id are never compared with one another
    closed = [(s, f, d, "1/1A" if i < 10 else None) for i, (s, f, d, _) in enumerate(SAME_NAMES)]
    assert block_pairs(_prob_records(closed), names) == (0, 40 * 39 // 2 - 10 * 9 // 2)
    # a swap meets its original in the block of names in either order
    assert block_pairs(_prob_records([("SMITH", "ALEX", None, None), ("ALEX", "SMITH", None, None)]), names) == (0, 1)
    # across agencies: 30 police records and 10 probation ones, all with the same name
    mixed = _prob_records(SAME_NAMES, sources=["police"] * 30 + ["probation"] * 10)
    assert block_pairs(mixed, names) == (30 * 10, 30 * 29 // 2 + 10 * 9 // 2)


def test_an_extra_block_over_the_budget_is_left_out_and_the_choice_is_deterministic():
    con = _prob_records(SAME_NAMES)
    core = sum(sum(block_pairs(con, b, narrow=True)) for b in CORE_BLOCKS)
    tight = choose_blocks(con, budget_per_record=(core + 100) / 40)  # room for 100 pairs beyond the core
    assert set(default_blocks()) <= set(tight.blocks)
    assert "names in either order (within an agency)" in dict(tight.left_out)  # 780 pairs: over the budget
    assert tight.counted_pairs <= tight.budget_pairs
    assert choose_blocks(con, (core + 100) / 40) == tight
    generous = choose_blocks(con, budget_per_record=1_000)
    meeting = {(b, WITHIN) for b in EXTRA_BLOCKS if block_pairs(con, b)[1]}  # a block meeting no pair adds nothing
    assert meeting and meeting <= set(generous.blocks) and not generous.left_out
    assert choose_blocks(con, budget_per_record=0).blocks == default_blocks()
    # a minimum number of pairs lets a small extract take every block, whatever the pairs per record
    assert choose_blocks(con, budget_per_record=0, minimum=10**6).blocks == generous.blocks
    # across agencies only: nothing within one is ever chosen
    assert all(scope == ACROSS for _, scope in choose_blocks(con, 1_000, within_source=False).blocks)


def test_the_rules_restrict_pairs_to_those_that_could_change_who_is_linked():
    block = Block("x", ("a", "b"))
    assert block.conditions() == ("l.a = r.a AND l.b = r.b",)
    (rule,) = blocking_rules(((block, ACROSS), (block, WITHIN)))
    assert "(l.open OR r.open) AND l.comp <> r.comp" in rule and "source" not in rule
    (rule,) = blocking_rules(((block, ACROSS),))
    assert rule.endswith("l.source <> r.source")


# --- through the real ingest (Splink): seconds each -----------------------------------------------

_FILLER = [("Okafor", "Aisha"), ("Lindqvist", "Bartholomew"), ("Brennan", "Cormac"), ("Castellano", "Delphine"),
           ("Drummond", "Emeka"), ("Ferreira", "Fenella"), ("Gallagher", "Gustav"), ("Haddad", "Hamish"),
           ("Iwasaki", "Ingrid"), ("Jablonski", "Jolyon"), ("Kowalczyk", "Kasia"), ("Laurent", "Leopold")]
_FORENAMES = ("Mireille", "Nnamdi", "Ottilie", "Perpetua", "Quentin")  # 60 people with the surnames above


def _case(crn: str, surname: str, forenames: str, dob: str) -> dict:
    return example_row("probation_cases", crn=crn, pnc_id="", nomis_id="", surname=surname, forenames=forenames,
                       date_of_birth=dob)




@pytest.mark.slow
def test_a_duplicate_within_one_agency_with_its_initial_mistyped_is_found(tmp_path):
    # two CRNs of one person, the surname's first letter mistyped: the old within-agency
    # restriction (both initials and the year of birth agree) never compared them
    filler = [_case(f"F{i:06d}", s, f, (date(1960, 1, 5) + timedelta(days=211 * i)).isoformat())
              for i, (s, f) in enumerate((s, f) for s, _ in _FILLER for f in _FORENAMES)]
    rows = {"probation_cases": [_case("X000001", "Ashworth", "Daniel", "1991-04-17"),
                                _case("X000002", "Eshworth", "Daniel", "1991-04-17"), *filler]}
    config = make_workspace(tmp_path, rows)
    ingest_workspace(config)
    keys = person_keys_by_record(config)
    assert keys["probation:X000001"] == keys["probation:X000002"]
    assert len({keys[f"probation:{row['crn']}"] for row in filler}) == len(filler)


def _budget(config, value: float):
    from pipeline.config import load_config

    text = config.path.read_text(encoding="utf-8")
    for key in ("pair_budget", "pair_budget_minimum"):
        text = text.replace(f"\n{key} = ", f"\n# {key} = ", 1)
    text = text.replace("[linking]\n", f"[linking]\npair_budget = {value}\npair_budget_minimum = 0\n", 1)
    config.path.write_text(text, encoding="utf-8")
    return load_config(config.path)


@pytest.mark.slow
@pytest.mark.parametrize(("budget", "linked"), [(0, False), (50, True)])
def test_a_copy_with_a_name_and_its_date_corrupted_is_found_when_the_budget_allows(tmp_path, budget, linked):
    # surname mistyped beyond its initial's reach of the date blocks, and the year one out across
    # a decade: no core block meets the pair; the extra blocks (forename and the surname's Soundex,
    # forename and day and month) do
    filler = [example_row("police_nominals", police_person_id=f"F{i:03d}", pnc_id="", surname=s, forenames=f,
                          date_of_birth=f"19{60 + i}-0{1 + i % 9}-1{i % 9}") for i, (s, f) in enumerate(_FILLER)]
    rows = {"police_nominals": [example_row("police_nominals", police_person_id="N1", pnc_id="", surname="Ashworth",
                                            forenames="Daniel", date_of_birth="1990-04-17"), *filler],
            "probation_cases": [_case("X000001", "Ashwroth", "Daniel", "1989-04-17")]}
    config = _budget(make_workspace(tmp_path, rows), budget)
    report = ingest_workspace(config)
    keys = person_keys_by_record(config)
    assert (keys["police:N1"] == keys["probation:X000001"]) == linked
    assert (report.link.pairs_compared > 0) == linked or budget > 0


def test_a_stored_model_without_the_current_levels_is_estimated_again():
    from datetime import datetime

    from pipeline.config import LinkingConfig
    from pipeline.link.models import StoredModel, estimate_reason
    from pipeline.link.probabilistic import settings_dict

    current = settings_dict(True)
    stored = StoredModel(1, "x", datetime(2026, 11, 1), "first link", 100, 0, "priors", current)
    assert estimate_reason(stored, 100, LinkingConfig(), False, current) is None
    older = settings_dict(True)
    dob = next(c for c in older["comparisons"] if c["output_column_name"] == "dob")
    dob["comparison_levels"] = [lv for lv in dob["comparison_levels"] if "one out" not in lv["label_for_charts"]]
    stale = StoredModel(1, "x", datetime(2026, 11, 1), "first link", 100, 0, "priors", older)
    assert "levels changed" in estimate_reason(stale, 100, LinkingConfig(), False, current)


def test_above_the_sample_size_the_pairs_are_estimated_from_a_fixed_sample():
    from pipeline.link.blocking import _keys_sql

    names = next(b for b in EXTRA_BLOCKS if b.keys == ("names_key",))
    con = _prob_records(SAME_NAMES)
    con.execute(_keys_sql(sample=20))  # about half of the 40 records, scaled by the square of the share
    sampled = con.execute("SELECT count(*) FROM block_keys").fetchone()[0]
    assert 5 < sampled < 35
    _, within = block_pairs(con, names)
    assert within == round(sampled * (sampled - 1) / 2 * (40 / sampled) ** 2)
    assert abs(within - 780) < 0.25 * 780
    con.execute(_keys_sql(sample=20))
    assert block_pairs(con, names) == (0, within)  # the same sample every time

"""Identity linking: PNC first, NOMIS, then name + date of birth; nothing dropped."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from builders import example_row, write_csv

from pipeline.contract import EXTRACTS
from pipeline.ingest import ingest
from pipeline.link import link_identities
from pipeline.retention import purge
from pipeline.warehouse import connect
from pipeline.workspace import ingest_workspace

REPO = Path(__file__).parents[2]


def nominal(pid, pnc, surname="Ashworth", forenames="Daniel", dob="1991-04-17"):
    return example_row("police_nominals", police_person_id=pid, pnc_id=pnc, surname=surname, forenames=forenames,
                       date_of_birth=dob)


def case(crn, pnc="", nomis="", surname="Ashworth", forenames="Daniel", dob="1991-04-17"):
    return example_row("probation_cases", crn=crn, pnc_id=pnc, nomis_id=nomis, surname=surname, forenames=forenames,
                       date_of_birth=dob)


def spell(spell_id, nomis, pnc="", surname="Ashworth", forenames="Daniel", dob="1991-04-17"):
    return example_row("prison_custody", spell_id=spell_id, nomis_id=nomis, pnc_id=pnc, surname=surname,
                       forenames=forenames, date_of_birth=dob)


def linked(config) -> tuple[dict[tuple[str, str], str], dict[str, dict]]:
    ingest(config)
    con = connect(config)
    try:
        summary = link_identities(con)
        keys = {(s, i): k for k, s, i in con.execute("SELECT person_key, source, source_id FROM person_ids").fetchall()}
        methods = {(s, i): m for s, i, m in con.execute("SELECT source, source_id, link_method FROM person_ids").fetchall()}
    finally:
        con.close()
    return keys, {"summary": summary, "methods": methods}


def test_pnc_links_all_three_agencies_in_short_and_long_form(workspace):
    config = workspace({
        "police_nominals": [nominal("N1", "2012/0394773H")],
        "probation_cases": [case("X000001", pnc="12/394773H", surname="Other")],
        "prison_custody": [spell("S1", "A1234AA", pnc="12/394773H", surname="Different")],
    })
    keys, info = linked(config)
    assert keys[("police", "N1")] == keys[("probation", "X000001")] == keys[("prison", "A1234AA")]
    assert info["methods"][("prison", "A1234AA")] == "pnc"


def test_nomis_number_links_probation_to_prison_without_pnc(workspace):
    config = workspace({
        "probation_cases": [case("X000001", nomis="A1234AA", surname="Smythe")],
        "prison_custody": [spell("S1", "A1234AA", surname="Jones")],
    })
    keys, info = linked(config)
    assert keys[("probation", "X000001")] == keys[("prison", "A1234AA")]
    assert info["methods"][("probation", "X000001")] == "nomis"


def test_name_and_dob_fallback_normalises_case_punctuation_and_accents(workspace):
    config = workspace({
        "police_nominals": [nominal("N1", "12/394773H", surname="O'Brien", forenames="Zoë Ann")],
        "prison_custody": [spell("S1", "A1234AA", surname="OBRIEN", forenames="ZOE")],
    })
    keys, info = linked(config)
    assert keys[("police", "N1")] == keys[("prison", "A1234AA")]
    assert info["methods"][("prison", "A1234AA")] == "name_dob"


def test_fallback_never_merges_two_different_pnc_ids_and_reports_ambiguity(workspace):
    config = workspace({
        "police_nominals": [nominal("N1", "12/394773H"), nominal("N2", "2002/0073319Z")],
        "probation_cases": [case("X000001")],  # same name and dob as both, no PNC
    })
    keys, info = linked(config)
    assert keys[("police", "N1")] != keys[("police", "N2")]
    assert keys[("probation", "X000001")] not in {keys[("police", "N1")], keys[("police", "N2")]}
    report = {r["source"]: r for r in info["summary"].per_source}
    assert report["probation"]["ambiguous"] == 1 and report["probation"]["unlinked"] == 1


def test_unlinked_records_are_people_of_their_own_and_nothing_is_dropped(workspace):
    config = workspace({
        "police_nominals": [nominal("N1", "12/394773H")],
        "probation_cases": [case("X000001", surname="Nobody", dob="1980-01-01")],
        "prison_custody": [spell("S1", "B1234BB", surname="Someone", dob="1975-01-01")],
    })
    keys, info = linked(config)
    assert len(set(keys.values())) == 3
    assert info["summary"].people == 3
    report = {r["source"]: r for r in info["summary"].per_source}
    assert all(report[s]["unlinked"] == 1 for s in ("police", "probation", "prison"))


@pytest.mark.slow
def test_person_key_is_stable_when_other_people_are_added(workspace, tmp_path):
    config = workspace({"police_nominals": [nominal("N1", "12/394773H")]})
    first, _ = linked(config)
    config = workspace({"police_nominals": [nominal("N0", "2002/0073319Z", surname="Before"), nominal("N1", "12/394773H")]})
    second, _ = linked(config)
    assert first[("police", "N1")] == second[("police", "N1")]


def test_records_chained_through_pnc_and_nomis_become_one_person(workspace):
    # police N1 and probation X1 share a PNC id; X1 and the prison record share a NOMIS number only;
    # a second prisoner shares nothing with them and stays apart
    config = workspace({
        "police_nominals": [nominal("N1", "12/394773H")],
        "probation_cases": [case("X000001", pnc="2012/0394773H", nomis="A1234AA", surname="Other")],
        "prison_custody": [spell("S1", "A1234AA", surname="Different", dob="1980-02-02"),
                           spell("S2", "B2345BB", surname="Apart", dob="1970-03-03")],
    })
    keys, info = linked(config)
    assert keys[("police", "N1")] == keys[("probation", "X000001")] == keys[("prison", "A1234AA")]
    assert keys[("prison", "B2345BB")] != keys[("police", "N1")]
    assert info["summary"].people == 2
    assert info["methods"][("prison", "A1234AA")] == "nomis"


@pytest.mark.slow
def test_relinks_only_when_the_loads_or_the_linking_code_change(workspace, tmp_path):
    config = workspace({
        "police_nominals": [nominal("N1", "2012/0394773H")],
        "probation_cases": [case("X000001", pnc="12/394773H", surname="Other")],
    })
    first = ingest_workspace(config)
    assert first.relinked and first.link.people == 1

    # nothing new: the stored links and their summary are kept
    again = ingest_workspace(config)
    assert not again.relinked
    assert again.link == first.link

    # a new probation extract: relinked, and its new case is a person of its own
    write_csv(tmp_path / "extracts" / "probation_cases.csv", EXTRACTS["probation_cases"].column_names,
              [case("X000001", pnc="12/394773H", surname="Other"), case("X000002", surname="Newcome", dob="1988-02-03")])
    third = ingest_workspace(config)
    assert third.relinked and third.link.people == 2

    # links built by other linking code (another fingerprint): relinked with no new file
    con = connect(config)
    con.execute("UPDATE meta SET value = 'built by older code' WHERE key = 'link_fingerprint'")
    con.close()
    assert ingest_workspace(config).relinked

    # a purge relinks in its own transaction: the next ingest has nothing to redo
    purge(config, "24m", now=datetime.now() + timedelta(days=800))
    after = ingest_workspace(config)
    assert not after.relinked and after.link.people == 0
    con = connect(config)
    assert con.execute("SELECT count(*) FROM person_ids").fetchall() == [(0,)]
    con.close()


def test_people_whose_keys_would_share_48_bits_get_distinct_keys(workspace):
    # found by search: sha256 of these two record ids agree in their first 12 hex digits
    first, second = "C10573205", "C22086917"
    assert hashlib.sha256(f"police:{first}".encode()).hexdigest()[:12] == \
        hashlib.sha256(f"police:{second}".encode()).hexdigest()[:12]
    config = workspace({"police_nominals": [
        nominal(first, "2012/0394773H", surname="Ashworth"),
        nominal(second, "2014/0112233E", surname="Brennan", dob="1985-06-30"),
        nominal("N3", "2015/0445566N", surname="Carver", dob="1979-01-12"),
    ]})
    keys, _ = linked(config)

    def digest(police_id: str) -> str:
        return hashlib.sha256(f"police:{police_id}".encode()).hexdigest().upper()

    assert keys[("police", first)] == "P" + digest(first)[12:24]
    assert keys[("police", second)] == "P" + digest(second)[12:24]
    assert keys[("police", "N3")] == "P" + digest("N3")[:12]  # everyone else keeps the usual key


def test_offences_and_events_of_no_current_record_are_counted_as_orphans(workspace):
    config = workspace({
        "police_nominals": [nominal("N1", "2012/0394773H")],
        "police_offences": [example_row("police_offences", offence_id="O1", police_person_id="N1"),
                            example_row("police_offences", offence_id="O2", police_person_id="N9"),
                            example_row("police_offences", offence_id="O3", police_person_id="N9")],
        "probation_cases": [case("X000001", pnc="12/394773H")],
        "probation_events": [example_row("probation_events", crn="X000001"),
                             example_row("probation_events", crn="X000009")],
    })
    _, info = linked(config)
    assert (info["summary"].orphan_offences, info["summary"].orphan_events) == (2, 1)


# --- the relink fingerprint: what decides the links, not the bytes of the source files -------------

_FINGERPRINT = """
import sys
sys.path.insert(0, sys.argv[1])
import pipeline.link.deterministic
assert pipeline.link.deterministic.__file__.startswith(sys.argv[1]), pipeline.link.deterministic.__file__
from pipeline.link import link_fingerprint
from pipeline.warehouse import open_warehouse
con = open_warehouse(sys.argv[2], read_only=True)
print(link_fingerprint(con))
"""


def _fingerprint_of_edited_code(tmp_path: Path, warehouse: Path, edits: list[tuple[str, str, str]]) -> str:
    """The fingerprint computed by a copy of the pipeline package with `edits` (file, old, new) applied."""
    copy = tmp_path / f"code{len(list(tmp_path.glob('code*')))}"
    shutil.copytree(REPO / "pipeline", copy / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for name, old, new in edits:
        path = copy / "pipeline" / name
        text = path.read_text()
        assert old in text, (name, old)
        path.write_text(text.replace(old, new, 1))
    done = subprocess.run([sys.executable, "-c", _FINGERPRINT, str(copy), str(warehouse)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
def test_the_fingerprint_ignores_docstrings_and_comments_but_not_sql_or_the_version(workspace, tmp_path):
    config = workspace({"police_nominals": [nominal("N1", "2012/0394773H")]})
    ingest_workspace(config)
    con = connect(config, read_only=True)
    stored = con.execute("SELECT value FROM meta WHERE key = 'link_fingerprint'").fetchall()[0][0]
    con.close()
    warehouse = config.warehouse_path

    assert _fingerprint_of_edited_code(tmp_path, warehouse, []) == stored
    prose = [
        ("link/deterministic.py", '"""Deterministic identity linking', '"""Deterministic identity linking, reworded'),
        ("link/deterministic.py", "def build_links(", "# a comment on the steps\ndef build_links("),
        ("facts.py", '"""Facts tables:', '"""Facts tables, described again:'),
        ("identifiers.py", "from __future__", "# a comment\nfrom __future__"),
    ]
    assert _fingerprint_of_edited_code(tmp_path, warehouse, prose) == stored

    version = [("link/fingerprint.py", 'LINK_VERSION = "3"', 'LINK_VERSION = "3.1"')]
    assert _fingerprint_of_edited_code(tmp_path, warehouse, version) != stored
    link_sql = [("link/deterministic.py", "FROM person_ids GROUP BY source ORDER BY source",
                 "FROM person_ids WHERE source <> 'police' GROUP BY source ORDER BY source")]
    assert _fingerprint_of_edited_code(tmp_path, warehouse, link_sql) != stored
    facts_sql = [("facts.py", "ORDER BY e.event_date", "ORDER BY e.event_date DESC")]
    assert _fingerprint_of_edited_code(tmp_path, warehouse, facts_sql) != stored


def test_a_person_who_loses_their_key_twice_never_takes_a_key_someone_holds():
    # Over several relinks a person's usual key (the first 12 hex digits of their smallest record's
    # hash) and then the next 12 went to others; now both are held by other people and this
    # person keeps neither: they must get a key nobody was ever given, not a second copy.
    import duckdb

    from pipeline.link.persons import assign_keys
    from pipeline.schema import LINKING_DDL

    digest = hashlib.sha256(b"police:R").hexdigest().upper()
    first, second = "P" + digest[:12], "P" + digest[12:24]
    con = duckdb.connect()
    for ddl in LINKING_DDL:
        con.execute(ddl)
    con.execute("CREATE TEMP TABLE linked (record_id VARCHAR, final_label UBIGINT)")
    con.execute("INSERT INTO linked VALUES ('police:R', 1), ('police:X1', 2), ('police:X2', 2), "
                "('police:Y1', 3), ('police:Y2', 3), ('police:Y3', 3)")
    con.execute("INSERT INTO person_key_registry VALUES (?, ?, now()), ('police:X1', ?, now()), "
                "('police:X2', ?, now()), ('police:Y1', ?, now()), ('police:Y2', ?, now()), ('police:Y3', ?, now())",
                ["police:R", first, first, first, second, second, second])
    assign_keys(con)
    keys = dict(con.execute("SELECT final_label, person_key FROM anchors").fetchall())
    assert keys[2] == first and keys[3] == second  # the people holding most of each key keep it
    assert keys[1] not in (first, second) and keys[1] == "P" + digest[24:36]
    assert len(set(keys.values())) == 3

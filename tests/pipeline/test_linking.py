"""Probabilistic linking (issue 14): thresholds, never two PNC ids, review decisions that survive a
relink, stable person keys, bad review files, the evidence in `iom explain`, evaluation."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import hypothesis.strategies as st
import polars as pl
import pytest
from builders import example_row, person_keys_by_record, write_csv
from builders import write_workspace as make_workspace
from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner

from cli import app
from pipeline.config import load_config
from pipeline.errors import ConfigError, InputFileError
from pipeline.link.clusters import cluster
from pipeline.link.review import import_decisions, review_queue, write_queue
from pipeline.run import movement
from pipeline.schema import LINKING_DDL
from pipeline.warehouse import connect
from pipeline.workspace import ingest_workspace

pytestmark = pytest.mark.slow  # Splink estimates and links on every warehouse built: seconds each

runner = CliRunner()

# Distinct people around the ones under test, so that no name is frequent (term frequencies).
_FILLER_SURNAMES = ["Okafor", "Lindqvist", "Brennan", "Castellano", "Drummond", "Ferreira", "Gallagher", "Haddad",
                    "Iwasaki", "Jablonski", "Kowalczyk", "Laurent", "Mbeki", "Novak", "Oyelaran", "Petrov",
                    "Quinlan", "Rasmussen", "Sandoval", "Thorne", "Umarov", "Vasquez", "Whitcombe", "Yilmaz"]
_FILLER_FORENAMES = ["Aisha", "Bartholomew", "Cormac", "Delphine", "Emeka", "Fenella", "Gustav", "Hamish", "Ingrid",
                     "Jolyon", "Kasia", "Leopold", "Mireille", "Nnamdi", "Ottilie", "Perpetua", "Quentin", "Rosalind",
                     "Silvester", "Tamsin", "Ulrike", "Valentin", "Wilhelmina", "Xavier"]


def filler() -> list[dict]:
    return [example_row("police_nominals", police_person_id=f"F{i:03d}", pnc_id="", surname=s, forenames=f,
                        date_of_birth=f"19{60 + i}-0{1 + i % 9}-1{i % 9}", area="Southmoor")
            for i, (s, f) in enumerate(zip(_FILLER_SURNAMES, _FILLER_FORENAMES, strict=True))]


def nominal(pid, pnc="", surname="Ashworth", forenames="Daniel James", dob="1991-04-17", **extra):
    return example_row("police_nominals", police_person_id=pid, pnc_id=pnc, surname=surname, forenames=forenames,
                       date_of_birth=dob, **extra)


def case(crn, pnc="", surname="Ashworth", forenames="Daniel James", dob="1991-04-17", nomis=""):
    return example_row("probation_cases", crn=crn, pnc_id=pnc, nomis_id=nomis, surname=surname, forenames=forenames,
                       date_of_birth=dob)


def with_linking(config, **values):
    """Append a [linking] table to the workspace's iom.toml and load it again."""
    text = config.path.read_text(encoding="utf-8")
    assert "[linking]" in text
    for key, value in values.items():
        text = text.replace(f"\n{key} = ", f"\n# {key} = ", 1)
        text = text.replace("[linking]\n", f"[linking]\n{key} = {value}\n", 1)
    config.path.write_text(text, encoding="utf-8")
    return load_config(config.path)




def methods_of(config) -> dict[str, str]:
    con = connect(config, read_only=True)
    try:
        return dict(con.execute("SELECT source || ':' || source_id, link_method FROM person_ids").fetchall())
    finally:
        con.close()


# A probation copy of police N1 with the surname mistyped and no PNC id: no identifier joins them.
TYPO = {"police_nominals": [nominal("N1", "12/394773H"), *filler()],
        "probation_cases": [case("X000001", surname="Ashwroth")]}


def test_a_record_without_a_pnc_id_is_linked_probabilistically_above_the_upper_threshold(tmp_path):
    config = make_workspace(tmp_path, TYPO)
    report = ingest_workspace(config)
    keys = person_keys_by_record(config)
    assert keys["police:N1"] == keys["probation:X000001"]
    assert methods_of(config)["probation:X000001"] == "probabilistic"
    assert report.link.auto_linked == 1 and report.link.review_queue == 0
    probation = next(s for s in report.link.per_source if s["source"] == "probation")
    assert probation["by_probabilistic"] == 1


@pytest.mark.parametrize(("lower", "upper", "expected"), [
    (0.5, 0.9, "linked"),
    (0.5, 0.999999999, "queued"),
    (0.999999998, 0.999999999, "no link"),
])
def test_thresholds_decide_link_queue_or_no_link(tmp_path, lower, upper, expected):
    # TYPO's pair is across two agencies: upper_threshold decides (the within-agency one only has to be valid)
    config = with_linking(make_workspace(tmp_path, TYPO), lower_threshold=lower, upper_threshold=upper,
                          upper_threshold_within=0.999999999)
    report = ingest_workspace(config)
    keys = person_keys_by_record(config)
    same = keys["police:N1"] == keys["probation:X000001"]
    assert same == (expected == "linked")
    assert report.link.review_queue == (1 if expected == "queued" else 0)
    queue = review_queue(config)
    assert queue.height == report.link.review_queue
    if expected == "queued":
        row = queue.row(0, named=True)
        assert (row["record_id_l"], row["record_id_r"]) == ("police:N1", "probation:X000001")
        assert row["surname_l"] == "Ashworth" and row["surname_r"] == "Ashwroth"
        assert row["level_surname"] == "surname one letter different"
        assert row["level_dob"] == "date of birth the same"
        assert row["weight_dob"] > 0 and row["suggested"] in ("match", "no_match")


def test_the_lower_threshold_may_not_exceed_the_upper(tmp_path):
    config = make_workspace(tmp_path)
    with pytest.raises(ConfigError, match="lower_threshold"):
        with_linking(config, lower_threshold=0.9, upper_threshold=0.5)


@pytest.mark.parametrize(("values", "key"), [
    ({"lower_threshold": 0.8, "upper_threshold": 0.9, "upper_threshold_within": 0.7}, "upper_threshold_within"),
    ({"lower_threshold": 0.8, "upper_threshold": 0.7, "upper_threshold_within": 0.9}, "upper_threshold"),
    ({"upper_threshold_within": 0}, "upper_threshold_within"),
    ({"upper_threshold_within": 1.5}, "upper_threshold_within"),
])
def test_each_upper_threshold_is_checked_against_the_lower_and_named(tmp_path, values, key):
    config = make_workspace(tmp_path)
    with pytest.raises(ConfigError, match=rf"{key}\b"):
        with_linking(config, **values)


# Police N1 (a PNC id) and a second police nominal of the same person, the surname mistyped and no
# PNC id: a duplicate within one agency, scored as TYPO's pair across two agencies is.
TYPO_WITHIN = {"police_nominals": [nominal("N1", "12/394773H"), nominal("N2", surname="Ashwroth"), *filler()]}


@pytest.mark.parametrize(("world", "pair", "across", "within", "expected"), [
    (TYPO_WITHIN, ("police:N1", "police:N2"), 0.999999999, 0.5, "linked"),
    (TYPO_WITHIN, ("police:N1", "police:N2"), 0.5, 0.999999999, "queued"),
    (TYPO, ("police:N1", "probation:X000001"), 0.5, 0.999999999, "linked"),
    (TYPO, ("police:N1", "probation:X000001"), 0.999999999, 0.5, "queued"),
])
def test_a_pair_within_one_agency_uses_its_own_upper_threshold(tmp_path, world, pair, across, within, expected):
    config = with_linking(make_workspace(tmp_path, world), lower_threshold=0.5, upper_threshold=across,
                          upper_threshold_within=within)
    report = ingest_workspace(config)
    keys = person_keys_by_record(config)
    assert (keys[pair[0]] == keys[pair[1]]) == (expected == "linked")
    assert report.link.auto_linked == (1 if expected == "linked" else 0)
    queue = review_queue(config)
    assert queue.height == report.link.review_queue == (1 if expected == "queued" else 0)
    if expected == "queued":
        row = queue.row(0, named=True)
        assert (row["record_id_l"], row["record_id_r"]) == pair
        # halfway from the lower threshold to this pair's upper one: the pair scored below it
        assert 0.5 <= row["match_probability"] < 0.999999999 and row["suggested"] == (
            "match" if row["match_probability"] >= (0.5 + 0.999999999) / 2 else "no_match")


def test_changing_the_within_agency_threshold_relinks(tmp_path):
    from pipeline.config import LinkingConfig
    from pipeline.link.fingerprint import link_fingerprint

    config = make_workspace(tmp_path, TYPO)
    ingest_workspace(config)
    con = connect(config, read_only=True)
    try:
        before = link_fingerprint(con, LinkingConfig())
        after = link_fingerprint(con, LinkingConfig(upper_threshold_within=0.95))
    finally:
        con.close()
    assert before != after


def test_a_record_matching_two_pnc_ids_joins_neither_and_waits_for_a_reviewer(tmp_path):
    # Two different people (PNC ids) with the same name and birth date; a probation copy without
    # a PNC id matches both exactly: it could be either, so it joins neither and both pairs are
    # reported and queued; a reviewer's match then links it to the one they chose.
    config = make_workspace(tmp_path, {
        "police_nominals": [nominal("N1", "12/394773H"), nominal("N2", "2002/0073319Z"), *filler()],
        "probation_cases": [case("X000001")]})
    report = ingest_workspace(config)
    keys = person_keys_by_record(config)
    assert len({keys["police:N1"], keys["police:N2"], keys["probation:X000001"]}) == 3
    assert report.link.conflicts == 2 and report.link.review_queue == 2
    con = connect(config, read_only=True)
    try:
        reasons = {r[0] for r in con.execute("SELECT reason FROM link_conflicts").fetchall()}
    finally:
        con.close()
    assert reasons == {"matches people with two different PNC ids: for a reviewer"}
    assert review_queue(config).height == 2
    import_decisions(config, _decide(config, tmp_path, {("police:N2", "probation:X000001"): "match"}))
    keys = person_keys_by_record(config)
    assert keys["probation:X000001"] == keys["police:N2"] != keys["police:N1"]


# --- the never-merge rule as an invariant ------------------------------------------------------


AGENCIES = ("police", "probation", "prison")


def _rid(i: int) -> str:
    return f"{AGENCIES[i % 3]}:{i:03d}"


def _cluster_tables(components: list[int | None], edges: list[tuple[int, int, float]],
                    rejected: list[tuple[int, int]]) -> duckdb.DuckDBPyConnection:
    """A connection holding what `cluster` reads: record i (of agency i mod 3) is alone in
    component i, with PNC id components[i] (None: none); edges and rejections between records."""
    con = duckdb.connect(":memory:")
    for ddl in LINKING_DDL:
        con.execute(ddl)
    con.execute("CREATE TEMP TABLE linked (record_id VARCHAR, source VARCHAR, pnc_norm VARCHAR, det_label UBIGINT, "
                "final_label UBIGINT)")
    for i, pnc in enumerate(components):
        con.execute("INSERT INTO linked VALUES (?, ?, ?, ?, ?)",
                    [_rid(i), AGENCIES[i % 3], None if pnc is None else f"P{pnc}", i, i])
    con.execute("CREATE TABLE link_pairs (record_id_l VARCHAR, record_id_r VARCHAR, match_probability DOUBLE, zone VARCHAR)")
    for a, b, p in edges:
        if a != b:
            left, right = sorted((_rid(a), _rid(b)))
            con.execute("INSERT INTO link_pairs VALUES (?, ?, ?, 'auto_link')", [left, right, p])
    now = datetime.now(UTC).replace(tzinfo=None)
    for n, (a, b) in enumerate(rejected):
        if a != b:
            con.execute("INSERT INTO link_decisions VALUES (?, ?, ?, ?, 'no_match', 'test', NULL, NULL, NULL, NULL, NULL)",
                        [n + 1, now, *sorted((_rid(a), _rid(b)))])
    return con


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_person_ever_holds_two_pnc_ids_nor_a_rejected_pair(data):
    n = data.draw(st.integers(2, 12))
    components = data.draw(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=n, max_size=n))
    pair = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1))
    edges = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.floats(0.9, 1.0)),
                               max_size=30, unique_by=lambda e: (min(e[0], e[1]), max(e[0], e[1]))))
    rejected = data.draw(st.lists(pair, max_size=4, unique_by=lambda e: (min(e), max(e))))
    con = _cluster_tables(components, edges, rejected)
    cluster(con)
    final = dict(con.execute("SELECT det_label, final_label FROM linked").fetchall())
    held: dict[int, set] = {}
    for i, pnc in enumerate(components):
        if pnc is not None:
            held.setdefault(final[i], set()).add(pnc)
    assert all(len(pncs) == 1 for pncs in held.values())
    for a, b in rejected:
        if a != b:
            assert final[a] != final[b]
    # nothing accepted is lost without a reason: an edge not applied is reported
    refused = con.execute("SELECT count(*) FROM link_conflicts").fetchone()[0]
    no = {(min(a, b), max(a, b)) for a, b in rejected}
    for a, b, _ in edges:
        if a != b and (min(a, b), max(a, b)) not in no and final[a] != final[b]:
            assert refused > 0


# --- review decisions -------------------------------------------------------------------------


def _decide(config, tmp_path: Path, decisions: dict[tuple[str, str], str], name="decisions.csv") -> Path:
    path = tmp_path / name
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["record_id_l", "record_id_r", "decision", "decided_by", "reason"])
        writer.writeheader()
        for (left, right), decision in decisions.items():
            writer.writerow({"record_id_l": left, "record_id_r": right, "decision": decision, "decided_by": "A. Analyst",
                             "reason": "checked with probation"})
    return path


def test_a_reviewers_match_links_the_pair_and_survives_a_relink(tmp_path):
    config = with_linking(make_workspace(tmp_path, TYPO), upper_threshold=0.999999999, lower_threshold=0.5)
    ingest_workspace(config)
    queue = review_queue(config)
    written = write_queue(queue.with_columns(decision=pl.lit("match")), tmp_path / "review.csv")
    result = import_decisions(config, written)
    assert (result.recorded, result.matches) == (1, 1)
    keys = person_keys_by_record(config)
    assert keys["police:N1"] == keys["probation:X000001"]
    assert methods_of(config)["probation:X000001"] == "review"
    assert review_queue(config).height == 0
    # a new extract: the link is rebuilt and the decision still holds
    write_csv(tmp_path / "extracts" / "prison_custody.csv", list(example_row("prison_custody")),
              [example_row("prison_custody", nomis_id="A1111AA", pnc_id="", surname="Zebedee", forenames="Ulla")])
    report = ingest_workspace(config)
    assert report.relinked
    keys = person_keys_by_record(config)
    assert keys["police:N1"] == keys["probation:X000001"]


def test_a_reviewers_no_match_wins_over_the_model_across_relinks(tmp_path):
    config = make_workspace(tmp_path, TYPO)
    ingest_workspace(config)
    assert person_keys_by_record(config)["police:N1"] == person_keys_by_record(config)["probation:X000001"]
    import_decisions(config, _decide(config, tmp_path, {("probation:X000001", "police:N1"): "no_match"}))
    keys = person_keys_by_record(config)
    assert keys["police:N1"] != keys["probation:X000001"]
    con = connect(config, read_only=True)
    try:
        trail = con.execute("SELECT record_id_l, record_id_r, decision, decided_by, reason, source_file, file_line "
                            "FROM link_decisions").fetchall()
    finally:
        con.close()
    assert trail == [("police:N1", "probation:X000001", "no_match", "A. Analyst", "checked with probation",
                      "decisions.csv", 2)]
    write_csv(tmp_path / "extracts" / "prison_custody.csv", list(example_row("prison_custody")),
              [example_row("prison_custody", nomis_id="A1111AA", pnc_id="", surname="Zebedee", forenames="Ulla")])
    assert ingest_workspace(config).relinked
    keys = person_keys_by_record(config)
    assert keys["police:N1"] != keys["probation:X000001"]


@pytest.mark.parametrize(("rows", "expected"), [
    ([{"record_id_l": "police:N1", "record_id_r": "probation:X000001", "decision": "perhaps"}],
     "row 2, column decision"),
    ([{"record_id_l": "police:N1", "record_id_r": "probation:X000001", "decision": "match"},
      {"record_id_l": "police:N1", "record_id_r": "probation:X999999", "decision": "match"}],
     "row 3, column record_id_r"),
    ([{"record_id_l": "", "record_id_r": "probation:X000001", "decision": "no_match"}], "row 2, column record_id_l"),
])
def test_a_bad_review_file_names_row_and_column_and_changes_nothing(tmp_path, rows, expected):
    config = make_workspace(tmp_path, TYPO)
    ingest_workspace(config)
    before = person_keys_by_record(config)
    path = tmp_path / "bad.csv"
    write_csv(path, ["record_id_l", "record_id_r", "decision"], rows)
    with pytest.raises(InputFileError, match=expected):
        import_decisions(config, path)
    con = connect(config, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM link_decisions").fetchone()[0] == 0
    finally:
        con.close()
    assert person_keys_by_record(config) == before


def test_a_review_file_without_the_decision_column_is_refused_by_the_cli(tmp_path):
    config = make_workspace(tmp_path, TYPO)
    ingest_workspace(config)
    path = tmp_path / "bad.csv"
    write_csv(path, ["record_id_l", "record_id_r"], [{"record_id_l": "police:N1", "record_id_r": "probation:X000001"}])
    result = runner.invoke(app, ["links", "decide", str(path), "--config", str(config.path)])
    assert result.exit_code == 4
    assert "row 1" in result.output and "decision" in result.output


# --- stable keys and movement --------------------------------------------------------------------


def test_a_person_keeps_their_key_when_a_later_link_adds_a_record(tmp_path):
    config = make_workspace(tmp_path, {"police_nominals": [nominal("N5", "12/394773H"), *filler()]})
    ingest_workspace(config)
    key = person_keys_by_record(config)["police:N5"]
    # a second nominal of the same person (same PNC id) whose id sorts first, and a probation copy
    write_csv(tmp_path / "extracts" / "police_nominals.csv", list(example_row("police_nominals")),
              [nominal("N5", "12/394773H"), nominal("N0", "12/394773H"), *filler()])
    write_csv(tmp_path / "extracts" / "probation_cases.csv", list(example_row("probation_cases")),
              [case("X000001", surname="Ashwroth")])
    ingest_workspace(config)
    keys = person_keys_by_record(config)
    assert keys["police:N0"] == keys["police:N5"] == keys["probation:X000001"] == key


def test_merged_keys_are_recorded_and_movement_says_records_merged(tmp_path):
    config = with_linking(make_workspace(tmp_path, TYPO), upper_threshold=0.999999999, lower_threshold=0.5)
    ingest_workspace(config)
    before = person_keys_by_record(config)
    police_key, probation_key = before["police:N1"], before["probation:X000001"]
    assert police_key != probation_key
    import_decisions(config, _decide(config, tmp_path, {("police:N1", "probation:X000001"): "match"}))
    after = person_keys_by_record(config)
    kept = after["police:N1"]
    assert kept in (police_key, probation_key) and after["probation:X000001"] == kept
    gone = probation_key if kept == police_key else police_key
    con = connect(config, read_only=True)
    try:
        events = con.execute("SELECT event, person_key, other_key FROM person_key_events").fetchall()
    finally:
        con.close()
    assert events == [("merged", kept, gone)]
    # last month the panel had the person under the key that is gone; this month under the kept one
    previous = pl.DataFrame({"cohort": ["priority"], "person_key": [gone], "area": ["Northgate"], "score": [40]})
    current = pl.DataFrame({"person_key": [kept], "priority": [True], "super_prolific": [False], "area": ["Northgate"],
                            "score": [42], "eligible": [True], "ineligible_reason": [None], "ineligible_code": [None],
                            "selection_note": [None]}, schema_overrides={"ineligible_reason": pl.Utf8,
                                                                        "ineligible_code": pl.Utf8,
                                                                        "selection_note": pl.Utf8})
    moves = movement(current, previous, "R0001", {gone: kept}).filter(pl.col("cohort") == "priority")
    assert moves.select("person_key", "status").rows() == [(kept, "continuing")]
    assert "records merged" in moves["reason"][0] and gone in moves["reason"][0]


# --- explain and evaluate -------------------------------------------------------------------------


def test_explain_shows_how_each_record_was_linked(tmp_path):
    rows = dict(TYPO)
    rows["police_offences"] = [example_row("police_offences", offence_id=f"CR{i}", police_person_id="N1",
                                           offence_date=f"2026-0{i}-10", recorded_date=f"2026-0{i}-11")
                               for i in range(1, 6)]
    config = make_workspace(tmp_path, rows)
    result = runner.invoke(app, ["run", "--config", str(config.path), "--as-of", "2026-11-01"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["explain", "X000001", "--config", str(config.path)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "How the records were linked:" in text
    assert "probation:X000001: probabilistic match (Splink)" in text
    assert "police:N1 ~ probation:X000001: match probability" in text and "linked by the model" in text
    for line in ("surname", "first forename", "date of birth", "sex", "area"):
        assert line in text
    assert "surname one letter different" in text and "date of birth the same" in text


def test_evaluate_scores_pairs_against_a_truth_file(tmp_path):
    # truth: N1, X000001 and prison A1234AA are one person, F000 another; the links join N1 and
    # X000001 only (the prison copy shares nothing): 1 of 3 true pairs, no false pair
    rows = dict(TYPO)
    rows["prison_custody"] = [example_row("prison_custody", nomis_id="A1234AA", pnc_id="", surname="Quixote",
                                          forenames="Zebulon", date_of_birth="1950-01-01")]
    config = make_workspace(tmp_path, rows)
    ingest_workspace(config)
    (tmp_path / "truth").mkdir()
    pl.DataFrame({"source": ["police_nominals", "probation_cases", "prison_custody", "police_nominals"],
                  "record_id": ["N1", "X000001", "A1234AA", "F000"], "person_id": ["T1", "T1", "T1", "T2"],
                  "corruptions": ["", "name_typo", "", ""]}).write_parquet(tmp_path / "truth" / "identities.parquet")
    result = runner.invoke(app, ["links", "evaluate", "--config", str(config.path)])
    assert result.exit_code == 0, result.output
    assert "precision" in result.output
    from pipeline.link.evaluate import evaluate

    e = evaluate(config)
    assert (e.records, e.true_pairs, e.predicted_pairs, e.true_predicted) == (4, 3, 1, 1)
    assert e.precision == 1.0 and e.recall == pytest.approx(1 / 3)
    no_truth = make_workspace(tmp_path / "other")
    assert runner.invoke(app, ["links", "evaluate", "--config", str(no_truth.path)]).exit_code == 8


def test_a_police_only_workspace_links_within_the_force_with_every_comparison(tmp_path):
    """One agency's extracts only (no probation, no prison): the exact rules find no pair, the
    expectation maximisation has too little to work on, and the link still scores on every field."""
    from datetime import date

    from builders import without_extracts

    from pipeline.config import load_config
    from pipeline.link.models import latest_model
    from pipeline.warehouse import connect
    from pipeline.workspace import generate_workspace, ingest_workspace

    _, config_path = generate_workspace(tmp_path, 3000, 5, date(2026, 11, 1), 0.0, past_decisions=False)
    without_extracts(config_path, "probation_cases", "probation_events", "prison_custody")
    config = load_config(config_path)
    report = ingest_workspace(config)
    assert report.link.people > 0
    con = connect(config, read_only=True)
    try:
        model = latest_model(con).model
    finally:
        con.close()
    assert {c["output_column_name"] for c in model["comparisons"]} >= {"surname", "forename", "dob", "sex", "area"}
    assert 0 < model["probability_two_random_records_match"] < 1


def test_a_comparison_an_estimation_dropped_is_put_back_with_its_priors():
    from pipeline.link.probabilistic import _with_every_comparison, settings_dict

    before = settings_dict(within_source=True)
    estimated = {**before, "comparisons": [c for c in before["comparisons"] if c["output_column_name"] != "dob"]}
    restored = _with_every_comparison(estimated, before)
    assert [c["output_column_name"] for c in restored["comparisons"]] == [c["output_column_name"] for c in before["comparisons"]]
    assert next(c for c in restored["comparisons"] if c["output_column_name"] == "dob") == \
        next(c for c in before["comparisons"] if c["output_column_name"] == "dob")


def test_a_pair_only_a_reviewer_decided_reads_as_one_clean_sentence():
    from datetime import datetime

    from pipeline.link.review import LinkEvidence, evidence_lines

    pair = {"record_id_l": "prison:F1234AA", "record_id_r": "probation:X123456", "match_probability": None,
            "match_weight": None, "zone": None, "decision": "no_match", "decided_by": "analyst A",
            "decided_at": datetime(2026, 12, 1, 9, 30)}
    assert evidence_lines(LinkEvidence([], [pair])) == [
        "prison:F1234AA ~ probation:X123456: reviewer analyst A decided not the same person on 2026-12-01"]

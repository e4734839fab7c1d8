"""Deterministic identity linking: PNC id, NOMIS number, then exact surname, forename and date of birth.

Named steps, in SQL but for the graph search of step 3:
1. `current_tables`  [one row per natural key]: the latest load of each source wins.
2. `id_records`      [one row per source record]: a police nominal, a probation case (CRN) or a
                     prisoner (NOMIS number), with normalised PNC, names and date of birth.
3. `components`      [one row per record]: records sharing a PNC id (normal form) or a NOMIS
                     number are joined, directly or through others (connected components of the
                     record-key graph, computed by scipy).
4. `fallback`        [one row per record]: a component with no PNC id joins the one component
                     that shares its normalised surname, first forename and date of birth; where
                     two or more candidates with different PNC ids match, it is left alone and
                     counted as ambiguous. Components with PNC ids never merge on names.
   Then, between this step and the next: the probabilistic step (`pipeline.link.probabilistic`:
   `link_pairs`), the clusters that join components by accepted links and never two PNC ids
   (`pipeline.link.clusters`), and the stable person keys (`pipeline.link.persons`: `anchors`).
5. `people`, `person_ids` (with each record's `link_method`: pnc, nomis, name_dob,
   probabilistic, review or unlinked), `link_report`; each person also has a `person_number`,
   0, 1, 2, ... in person-key order.
6. the facts tables (`pipeline.facts`): the current offences, custody spells, probation cases and
   events of linked records by person number, with no text ids: what the monthly features read.

Nothing is dropped: an unlinked probation or prison record is a person of its own.

`rendered_steps` is the SQL of every step as it runs: what `pipeline.link.fingerprint` hashes
to decide whether a relink is needed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from pipeline.config import LinkingConfig
from pipeline.contract import EXTRACTS, Extract
from pipeline.errors import WarehouseError
from pipeline.facts import build_facts
from pipeline.identifiers import name_normal_sql, pnc_normal_sql
from pipeline.link.blocking import (
    ACROSS,
    ALL_BLOCKS,
    CORE_BLOCKS,
    NARROW,
    WITHIN,
    _count_sql,
    _keys_sql,
    blocking_rules,
)
from pipeline.link.clusters import (
    _AMBIGUOUS_TO_REVIEW,
    _APPLY,
    _CANNOT,
    _CANNOT_WITHIN,
    _EDGES,
    _EDGES_WITHIN,
    cluster,
)
from pipeline.link.persons import STEPS as PERSON_KEY_STEPS
from pipeline.link.persons import assign_keys, record_keys
from pipeline.link.probabilistic import _RECORDS as _PROB_RECORDS
from pipeline.link.probabilistic import _STORE_PAIRS, PAIRS_DDL, score_pairs, settings_dict
from pipeline.schema import FSST
from pipeline.warehouse import cur_table, q, run_sql, src_table, table_exists, text_compression

log = logging.getLogger(__name__)


def _current_sql(extract: Extract, several_loads: bool) -> str:
    """Step 1 for one extract: a view of the only load, or the latest row of each key over several."""
    src, cur = q(src_table(extract)), q(cur_table(extract))
    key = [q(k) for k in extract.key]
    occurrence = (None if extract.has_unique_key
                  else f"row_number() OVER (PARTITION BY _load_id, {', '.join(key)} ORDER BY _line)")
    if not several_loads:
        # Nothing to replace, so no occurrence numbers either: a window in the view would be
        # computed at every read of it (a third of a second per million events).
        return f"CREATE VIEW {cur} AS SELECT * FROM {src}"
    source = f"(SELECT s.*, l.load_seq FROM {src} s JOIN loads l ON l.load_id = s._load_id)"
    helpers = ["_rank", "load_seq"]
    if occurrence:
        # No id of its own: the n-th identical row of a load is the same record in the next load.
        source = f"(SELECT *, {occurrence} AS _occurrence FROM {source})"
        key.append("_occurrence")
        helpers.append("_occurrence")
    return f"""CREATE TABLE {cur} AS
            SELECT * EXCLUDE ({', '.join(helpers)}) FROM (
                SELECT *, row_number() OVER (PARTITION BY {', '.join(key)} ORDER BY load_seq DESC, _line DESC) AS _rank
                FROM {source}) WHERE _rank = 1"""


def refresh_current_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Step 1 [one row per natural key]: rows of the latest load replace earlier rows with the same key.

    With a single load of a source nothing can be replaced: `cur_*` is then a view (no copy of
    ten million offences); with several it is materialised once here."""
    for extract in EXTRACTS.values():
        src, cur = q(src_table(extract)), q(cur_table(extract))
        loads = run_sql(con, f"current_tables: count loads of {extract.name}",
                        f"SELECT count(DISTINCT _load_id) FROM {src}").fetchall()[0][0]
        # DROP VIEW IF EXISTS fails on a table of that name (and the reverse): drop what is there.
        if table_exists(con, cur_table(extract)):
            run_sql(con, f"current_tables: drop {cur_table(extract)}", f"DROP TABLE {cur}")
        else:
            run_sql(con, f"current_tables: drop {cur_table(extract)}", f"DROP VIEW IF EXISTS {cur}")
        run_sql(con, f"current_tables: {cur_table(extract)}", _current_sql(extract, loads > 1))


def _records_sql(rid: str = "hash(record_id)") -> str:
    """Step 2 [one row per source record]. Probation and prison records take their latest values."""
    latest_case = "coalesce(supervision_start, DATE '1900-01-01')"
    records = []
    for source, id_column, nomis, table, area in (
        ("police", "police_person_id", "NULL::VARCHAR", "police", "area"),
        ("probation", "crn", "nomis_id", "probation", "area"),
        ("prison", "nomis_id", "nomis_id", "prison", "release_area"),
    ):
        records.append(
            f"""SELECT '{source}:' || {id_column} AS record_id, '{source}' AS source, {id_column} AS source_id,
                   nullif({pnc_normal_sql('pnc_id')}, '/') AS pnc_norm, {nomis} AS nomis,
                   nullif({name_normal_sql('surname')}, '') AS surname_n,
                   nullif({name_normal_sql("split_part(trim(forenames), ' ', 1)")}, '') AS forename_n,
                   date_of_birth, sex, {area} AS area
            FROM {table}"""
        )
    return f"""
    CREATE OR REPLACE TEMP TABLE id_records AS
    SELECT {rid} AS rid, * FROM (
    WITH police AS (SELECT * FROM {cur_table('police_nominals')}),
    probation AS (
        SELECT crn, arg_max(pnc_id, {latest_case}) FILTER (WHERE pnc_id IS NOT NULL) AS pnc_id,
               arg_max(nomis_id, {latest_case}) FILTER (WHERE nomis_id IS NOT NULL) AS nomis_id,
               arg_max(surname, {latest_case}) AS surname, arg_max(forenames, {latest_case}) AS forenames,
               arg_max(date_of_birth, {latest_case}) AS date_of_birth,
               arg_max(sex, {latest_case}) AS sex, arg_max(area, {latest_case}) AS area
        FROM {cur_table('probation_cases')} GROUP BY crn),
    prison AS (
        SELECT nomis_id, arg_max(pnc_id, reception_date) FILTER (WHERE pnc_id IS NOT NULL) AS pnc_id,
               arg_max(surname, reception_date) AS surname, arg_max(forenames, reception_date) AS forenames,
               arg_max(date_of_birth, reception_date) AS date_of_birth,
               arg_max(sex, reception_date) AS sex, arg_max(release_area, reception_date) AS release_area
        FROM {cur_table('prison_custody')} GROUP BY nomis_id)
    {" UNION ALL ".join(records)})
    """


_RECORD_IX = """CREATE OR REPLACE TEMP TABLE record_ix AS  -- [one record]: a dense index for the graph
        SELECT rid, row_number() OVER () - 1 AS ix, pnc_norm, nomis FROM id_records"""
_GRAPH_KEYS = ("pnc_norm", "nomis")
_LABELS = "CREATE OR REPLACE TEMP TABLE labels AS SELECT rid, label FROM labels_frame"


def _key_edges_sql(column: str) -> str:
    """[one record holding a key]: the key as a dense integer, numbered by grouping."""
    return f"""WITH keys AS (
                    SELECT {column}, row_number() OVER () - 1 AS k FROM record_ix
                    WHERE {column} IS NOT NULL GROUP BY {column})
                SELECT r.ix, k.k FROM record_ix r JOIN keys k USING ({column})"""


def _components(con: duckdb.DuckDBPyConnection) -> int:
    """Step 3 [one row per record]: records sharing a PNC id or a NOMIS number, directly or
    through others, form one component, labelled with its smallest `rid`; returns the count.

    The graph joins each record to its PNC and NOMIS keys (dense integers from DuckDB); its
    connected components come from scipy's compiled graph search in one pass, where repeated
    label-propagation rounds in SQL took seconds at a million records."""
    from scipy.sparse import coo_matrix  # imported here: commands that never link skip its 0.3 s import
    from scipy.sparse.csgraph import connected_components

    run_sql(con, "components: record_ix", _RECORD_IX)
    edges = []
    for column in _GRAPH_KEYS:
        found = run_sql(con, f"components: {column} edges", _key_edges_sql(column)).fetchnumpy()
        edges.append((found["ix"].astype(np.int64), found["k"].astype(np.int64)))
    ids = run_sql(con, "components: record ids", "SELECT ix, rid FROM record_ix").fetchnumpy()
    records = len(ids["ix"])
    rid = np.empty(records, dtype=ids["rid"].dtype)
    rid[ids["ix"]] = ids["rid"]
    # Node numbers: records first, then the PNC keys, then the NOMIS keys.
    cols, offset = [], records
    for _, key in edges:
        cols.append(key + offset)
        offset += int(key.max()) + 1 if len(key) else 0
    rows = np.concatenate([ix for ix, _ in edges])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, np.concatenate(cols))), shape=(offset, offset))
    count, component = connected_components(graph.tocsr(), directed=False)
    component = component[:records]
    # Each component's label is its smallest rid: a property of its records, not of the order
    # in which DuckDB handed them over.
    order = np.lexsort((rid, component))
    in_order = component[order]
    first = np.ones(records, dtype=bool)
    first[1:] = in_order[1:] != in_order[:-1]
    smallest = np.empty(count, dtype=rid.dtype)
    smallest[in_order[first]] = rid[order][first]
    con.register("labels_frame", pa.table({"rid": rid, "label": smallest[component]}))
    run_sql(con, "components: labels", _LABELS)
    con.unregister("labels_frame")
    run_sql(con, "components: drop record_ix", "DROP TABLE record_ix")
    return int(count)  # every key node hangs off a record, so each component holds records


_FALLBACK = """
CREATE OR REPLACE TEMP TABLE linked AS
WITH comp AS (
    SELECT l.label, bool_or(r.pnc_norm IS NOT NULL) AS has_pnc
    FROM labels l JOIN id_records r USING (rid) GROUP BY l.label),
-- [one component and name key]: the name key is normalised surname, first forename and date of birth
keys AS (
    SELECT DISTINCT l.label, r.surname_n, r.forename_n, r.date_of_birth
    FROM labels l JOIN id_records r USING (rid)
    WHERE r.surname_n IS NOT NULL AND r.forename_n IS NOT NULL AND r.date_of_birth IS NOT NULL),
-- [one name key]: a component appears once per name key in `keys`, so plain counts count components
key_groups AS (
    SELECT k.surname_n, k.forename_n, k.date_of_birth,
           count(*) FILTER (WHERE c.has_pnc) AS pnc_components,
           min(k.label) FILTER (WHERE c.has_pnc) AS pnc_label,
           min(k.label) AS any_label,
           count(*) AS components
    FROM keys k JOIN comp c USING (label) GROUP BY k.surname_n, k.forename_n, k.date_of_birth),
candidates AS (
    SELECT k.label,
           count(DISTINCT CASE WHEN g.pnc_components = 1 THEN g.pnc_label
                               WHEN g.pnc_components = 0 THEN g.any_label END) AS targets,
           min(CASE WHEN g.pnc_components = 1 THEN g.pnc_label
                    WHEN g.pnc_components = 0 THEN g.any_label END) AS target,
           bool_or(g.pnc_components > 1) AS ambiguous,
           bool_or(g.components > 1) AS has_match
    FROM keys k JOIN comp c USING (label) JOIN key_groups g USING (surname_n, forename_n, date_of_birth)
    WHERE NOT c.has_pnc GROUP BY k.label),
relabel AS (
    SELECT label,
           CASE WHEN NOT ambiguous AND targets = 1 AND has_match THEN target ELSE label END AS final_label,
           ambiguous
    FROM candidates)
SELECT r.rid, r.record_id, r.source, r.source_id, r.pnc_norm, r.nomis, l.label AS pnc_label,
       coalesce(x.final_label, l.label) AS det_label, coalesce(x.final_label, l.label) AS final_label,
       coalesce(x.ambiguous, false) AS ambiguous
FROM id_records r JOIN labels l USING (rid) LEFT JOIN relabel x ON x.label = l.label
"""


_PERSON_IDS_DDL = """
CREATE OR REPLACE TABLE person_ids (
    person_key VARCHAR {many}, person_number INTEGER, source VARCHAR, source_id VARCHAR {many},
    pnc_norm VARCHAR {many}, link_method VARCHAR, ambiguous BOOLEAN, linked_across_agencies BOOLEAN)"""
_PERSON_IDS = """
INSERT INTO person_ids BY NAME
WITH
-- counts by grouping and joining back: windows with DISTINCT over a million rows cost far more
component AS (
    SELECT final_label, count(*) AS records,
           bit_count(bit_or(CASE source WHEN 'police' THEN 1 WHEN 'probation' THEN 2 ELSE 4 END)) AS sources
    FROM linked GROUP BY ALL),
same_pnc AS (SELECT final_label, pnc_norm, count(*) AS records FROM linked WHERE pnc_norm IS NOT NULL GROUP BY ALL),
same_nomis AS (SELECT final_label, nomis, count(*) AS records FROM linked WHERE nomis IS NOT NULL GROUP BY ALL),
pnc_component AS (SELECT pnc_label, count(*) AS records FROM linked GROUP BY ALL),
det_component AS (SELECT det_label, count(*) AS records FROM linked GROUP BY ALL)
SELECT a.person_key, a.person_number, l.source, l.source_id, l.pnc_norm,
       CASE
         WHEN c.records = 1 THEN 'unlinked'
         WHEN coalesce(p.records, 0) > 1 THEN 'pnc'
         WHEN coalesce(n.records, 0) > 1 THEN 'nomis'
         WHEN l.det_label <> l.pnc_label OR dc.records > pc.records THEN 'name_dob'
         WHEN j.joined_by IS NOT NULL THEN j.joined_by
         ELSE 'pnc'
       END AS link_method,
       l.ambiguous,
       c.sources > 1 AS linked_across_agencies
FROM linked l
JOIN anchors a USING (final_label)
JOIN component c USING (final_label)
JOIN pnc_component pc USING (pnc_label)
JOIN det_component dc USING (det_label)
LEFT JOIN joined_by j ON j.label = l.det_label
LEFT JOIN same_pnc p ON p.final_label = l.final_label AND p.pnc_norm = l.pnc_norm
LEFT JOIN same_nomis n ON n.final_label = l.final_label AND n.nomis = l.nomis
"""

_PEOPLE_DDL = """
CREATE OR REPLACE TABLE people (
    person_key VARCHAR {many}, person_number INTEGER, police_person_id VARCHAR {many}, pnc_id VARCHAR {many},
    crn VARCHAR {many}, nomis_id VARCHAR {many}, surname VARCHAR {many}, forenames VARCHAR {many},
    date_of_birth DATE, sex VARCHAR, ethnicity VARCHAR, area VARCHAR, deceased_date DATE,
    in_police BOOLEAN, in_probation BOOLEAN, in_prison BOOLEAN)"""
_PEOPLE = f"""
INSERT INTO people BY NAME
WITH police AS (
    SELECT i.final_label, arg_min(n.police_person_id, n.police_person_id) AS police_person_id,
           arg_min(n.pnc_id, n.police_person_id) FILTER (WHERE n.pnc_id IS NOT NULL) AS pnc_id,
           arg_min(n.surname, n.police_person_id) AS surname, arg_min(n.forenames, n.police_person_id) AS forenames,
           arg_min(n.date_of_birth, n.police_person_id) AS date_of_birth, arg_min(n.sex, n.police_person_id) AS sex,
           arg_min(n.ethnicity, n.police_person_id) AS ethnicity, arg_min(n.area, n.police_person_id) AS area,
           min(n.deceased_date) AS deceased_date, count(*) AS police_records
    FROM linked i JOIN {cur_table('police_nominals')} n ON i.source = 'police' AND n.police_person_id = i.source_id
    GROUP BY i.final_label),
probation AS (
    SELECT i.final_label, min(c.crn) AS crn,
           arg_max(c.pnc_id, coalesce(c.supervision_start, DATE '1900-01-01')) FILTER (WHERE c.pnc_id IS NOT NULL) AS pnc_id,
           arg_max(c.surname, coalesce(c.supervision_start, DATE '1900-01-01')) AS surname,
           arg_max(c.forenames, coalesce(c.supervision_start, DATE '1900-01-01')) AS forenames,
           arg_max(c.date_of_birth, coalesce(c.supervision_start, DATE '1900-01-01')) AS date_of_birth,
           arg_max(c.sex, coalesce(c.supervision_start, DATE '1900-01-01')) AS sex,
           arg_max(c.area, coalesce(c.supervision_start, DATE '1900-01-01')) AS area
    FROM linked i JOIN {cur_table('probation_cases')} c ON i.source = 'probation' AND c.crn = i.source_id
    GROUP BY i.final_label),
prison AS (
    SELECT i.final_label, min(p.nomis_id) AS nomis_id,
           arg_max(p.pnc_id, p.reception_date) FILTER (WHERE p.pnc_id IS NOT NULL) AS pnc_id,
           arg_max(p.surname, p.reception_date) AS surname, arg_max(p.forenames, p.reception_date) AS forenames,
           arg_max(p.date_of_birth, p.reception_date) AS date_of_birth, arg_max(p.sex, p.reception_date) AS sex,
           arg_max(p.release_area, p.reception_date) AS area
    FROM linked i JOIN {cur_table('prison_custody')} p ON i.source = 'prison' AND p.nomis_id = i.source_id
    GROUP BY i.final_label)
SELECT k.person_key, k.person_number,
       police.police_person_id, coalesce(police.pnc_id, probation.pnc_id, prison.pnc_id) AS pnc_id,
       probation.crn, prison.nomis_id,
       coalesce(police.surname, probation.surname, prison.surname) AS surname,
       coalesce(police.forenames, probation.forenames, prison.forenames) AS forenames,
       coalesce(police.date_of_birth, probation.date_of_birth, prison.date_of_birth) AS date_of_birth,
       coalesce(police.sex, probation.sex, prison.sex) AS sex,
       police.ethnicity,
       coalesce(police.area, probation.area, prison.area) AS area,
       police.deceased_date,
       police.final_label IS NOT NULL AS in_police,
       probation.final_label IS NOT NULL AS in_probation,
       prison.final_label IS NOT NULL AS in_prison
FROM anchors k  -- grouped on integer labels; the string key is joined once, here
LEFT JOIN police USING (final_label) LEFT JOIN probation USING (final_label) LEFT JOIN prison USING (final_label)
"""

_REPORT = """
CREATE OR REPLACE TABLE link_report AS
SELECT source,
       count(*) AS records,
       count(*) FILTER (WHERE linked_across_agencies) AS linked,
       count(*) FILTER (WHERE NOT linked_across_agencies) AS unlinked,
       count(*) FILTER (WHERE link_method = 'pnc') AS by_pnc,
       count(*) FILTER (WHERE link_method = 'nomis') AS by_nomis,
       count(*) FILTER (WHERE link_method = 'name_dob') AS by_name_dob,
       count(*) FILTER (WHERE link_method = 'probabilistic') AS by_probabilistic,
       count(*) FILTER (WHERE link_method = 'review') AS by_review,
       count(*) FILTER (WHERE ambiguous) AS ambiguous
FROM person_ids GROUP BY source ORDER BY source
"""


@dataclass(frozen=True)
class LinkSummary:
    people: int
    components: int  # after PNC and NOMIS linking, before the name fallback
    per_source: list[dict]
    orphan_offences: int
    orphan_events: int
    # the probabilistic step (pipeline.link.probabilistic) and the clusters (pipeline.link.clusters)
    model_version: int | None = None
    model_estimated: str | None = None  # why a model was estimated at this link; None: the stored one
    pairs_scored: int = 0  # pairs at or above the lower threshold
    auto_linked: int = 0  # of which at or above the upper threshold
    review_queue: int = 0  # pairs between the thresholds waiting for a reviewer
    conflicts: int = 0  # accepted links not applied: two PNC ids, or a pair a reviewer rejected
    keys_merged: int = 0
    keys_split: int = 0
    pairs_compared: int = 0  # pairs the probabilistic step's blocks generated
    blocks_used: list[str] | None = None  # its blocks: the core ones and the extras within the pair budget
    probabilistic_seconds: float = 0.0


_RANK_RID = "row_number() OVER (ORDER BY record_id)"
_TEMP_TABLES = ("id_records", "labels", "linked", "anchors", "link_edges", "link_cannot", "applied_edges", "joined_by")
# [one pair waiting for a reviewer]: between the thresholds, undecided, still two people.
# The people of both records are found first (equality joins only), compared after.
_QUEUE = """WITH undecided AS (
        SELECT record_id_l, record_id_r FROM link_pairs p WHERE zone = 'review'
        AND NOT EXISTS (SELECT 1 FROM link_decisions d WHERE d.record_id_l = p.record_id_l AND d.record_id_r = p.record_id_r)),
    ends AS MATERIALIZED (
        SELECT (SELECT final_label FROM linked WHERE record_id = u.record_id_l) AS label_l,
               (SELECT final_label FROM linked WHERE record_id = u.record_id_r) AS label_r
        FROM undecided u)
    SELECT count(*) FROM ends WHERE label_l <> label_r"""
_ORPHANS = f"""SELECT (SELECT count(*) FROM {cur_table('police_offences')}) - (SELECT count(*) FROM offence_facts),
                   (SELECT count(*) FROM {cur_table('probation_events')}) - (SELECT count(*) FROM event_facts)"""


def build_links(con: duckdb.DuckDBPyConnection, settings: LinkingConfig | None = None,
                reestimate: bool = False) -> LinkSummary:
    """Steps 1 to 6 with the probabilistic step and the clusters between the name fallback and
    the people: rebuild the current tables, the links, the people and the facts tables."""
    settings = settings or LinkingConfig()
    refresh_current_tables(con)
    run_sql(con, "id_records", _records_sql())
    # Integer labels are hashes of the record ids (no sort of every id); on the rare collision,
    # fall back to ranks, which are unique by construction.
    if run_sql(con, "id_records: hash collisions",
               "SELECT count(*) - count(DISTINCT rid) FROM id_records").fetchall()[0][0]:
        run_sql(con, "id_records (ranked)", _records_sql(_RANK_RID))
    components = _components(con)
    run_sql(con, "fallback", _FALLBACK)
    scored = score_pairs(con, settings, reestimate)
    joined = cluster(con)
    keys = assign_keys(con)
    if run_sql(con, "anchors: shared or missing keys",
               "SELECT count(*) - count(DISTINCT person_key) + (SELECT count(DISTINCT final_label) FROM linked) - count(*) "
               "FROM anchors").fetchall()[0][0]:
        raise WarehouseError(  # two people with all five 12-digit parts of their hashes taken: about never
            "two people were given the same person key, or a person none", hint="report this: the linking code needs longer keys"
        )
    # Declared, then filled: identifiers and names take the file's clause for nearly unique text.
    many = text_compression(con)
    run_sql(con, "person_ids: table", _PERSON_IDS_DDL.format(many=many))
    run_sql(con, "person_ids", _PERSON_IDS)
    run_sql(con, "people: table", _PEOPLE_DDL.format(many=many))
    run_sql(con, "people", _PEOPLE)
    build_facts(con)
    run_sql(con, "link_report", _REPORT)
    record_keys(con)
    queue = run_sql(con, "review queue size", _QUEUE).fetchone()[0]
    for temp in _TEMP_TABLES:
        run_sql(con, f"drop {temp}", f"DROP TABLE IF EXISTS {temp}")
    people = run_sql(con, "count people", "SELECT count(*) FROM people").fetchone()[0]
    report = run_sql(con, "read link_report", "SELECT * FROM link_report")
    columns = [d[0] for d in report.description]
    per_source = [dict(zip(columns, row, strict=True)) for row in report.fetchall()]
    # Offences and events of no current nominal or case are the ones the facts could not place.
    orphan_offences, orphan_events = run_sql(con, "count orphans", _ORPHANS).fetchone()
    log.info("linked %d people (%d components before the name fallback, %d probabilistic links applied, "
             "%d pairs for review)", people, components, joined["applied"], queue)
    return LinkSummary(people, components, per_source, orphan_offences, orphan_events,
                       model_version=scored.model_version, model_estimated=scored.estimated,
                       pairs_scored=scored.pairs, auto_linked=scored.auto_link, review_queue=int(queue),
                       conflicts=joined["refused"], keys_merged=keys["merged"], keys_split=keys["split"],
                       pairs_compared=scored.compared_pairs, blocks_used=list(scored.blocks),
                       probabilistic_seconds=scored.seconds)


def rendered_steps() -> dict[str, str]:
    """The SQL of every step, as it runs: what decides the links (with the loads and LINK_VERSION)."""
    steps = {f"current_tables {e.name} {n}": _current_sql(e, n > 1) for e in EXTRACTS.values() for n in (1, 2)}
    steps.update({
        "id_records": _records_sql(),
        "id_records (ranked)": _records_sql(_RANK_RID),
        "components: record_ix": _RECORD_IX,
        **{f"components: {c} edges": _key_edges_sql(c) for c in _GRAPH_KEYS},
        "components: labels": _LABELS,
        "fallback": _FALLBACK,
        **{f"probabilistic: {k}": v for k, v in (("prob_records", _PROB_RECORDS), ("link_pairs", PAIRS_DDL),
                                                   ("store pairs", _STORE_PAIRS))},
        "probabilistic: settings": json.dumps(settings_dict(True), sort_keys=True),
        "probabilistic: blocks": json.dumps([blocking_rules(tuple((b, s) for b in ALL_BLOCKS for s in (ACROSS, WITHIN, NARROW))),
                                             _keys_sql(), [_count_sql(b) for b in ALL_BLOCKS],
                                             [_count_sql(b, True) for b in CORE_BLOCKS]]),
        **{f"clusters: {k}": v for k, v in (("edges", _EDGES), ("cannot", _CANNOT), ("apply", _APPLY),
                                             ("within", _EDGES_WITHIN + _CANNOT_WITHIN),
                                             ("ambiguous", _AMBIGUOUS_TO_REVIEW))},
        **{f"person keys: {k}": v for k, v in PERSON_KEY_STEPS.items()},
        "review queue": _QUEUE,
        "person_ids": _PERSON_IDS_DDL.format(many=FSST) + _PERSON_IDS,
        "people": _PEOPLE_DDL.format(many=FSST) + _PEOPLE,
        "link_report": _REPORT,
    })
    return steps

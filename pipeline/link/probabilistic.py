"""Probabilistic identity linking with Splink (DuckDB backend), after the deterministic steps.

Records whose deterministic component (PNC id, NOMIS number, exact name and date of birth)
holds no PNC id are compared with records of other components: surname and first forename
(exact with term-frequency adjustment, swapped, part of a double-barrelled name,
Damerau-Levenshtein and Jaro-Winkler levels), date of birth (exact, day and month transposed,
one character different), sex and area. Two components that both hold PNC ids are never
compared: either they share the id (already one component) or their ids differ (never merged).

Named steps:
1. `prob_records` [one source record]: the comparison columns, the deterministic component and
   whether it holds a PNC id; handed to Splink as Arrow on a connection of its own, so that
   Splink's working tables never touch the warehouse.
2. estimation (only on request or when the records changed by the configured share): u by
   random sampling, m from the PNC-linked pairs as labels (or by expectation maximisation when
   there are too few of them), the prior from the deterministic links. The model is stored in
   `link_models` with its version and sha256 (`pipeline.link.models`).
3. `link_pairs` [one compared pair scoring at least the lower threshold]: match probability,
   match weight, and the weight of each field with the level it fell in.

Splink and its pandas are imported only here, only when a link runs.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pipeline.link.blocking import (
    KEY_COLUMNS,
    SOUNDS,
    SX_PAIR,
    Block,
    blocking_rules,
    choose_blocks,
    default_blocks,
)
from pipeline.warehouse import MEMORY_LIMIT, run_sql

log = logging.getLogger(__name__)

# The fields compared, in the order evidence is shown.
FIELDS = ("surname", "forename", "dob", "sex", "area", "agency")
FIELD_LABELS = {"surname": "surname", "forename": "first forename", "dob": "date of birth", "sex": "sex",
                "area": "area", "agency": "agency"}
MIN_LABELLED_PAIRS = 50  # fewer PNC-linked pairs than this: m by expectation maximisation instead

_RECORDS = """
CREATE OR REPLACE TEMP TABLE prob_records AS  -- [one source record]: what Splink compares
WITH comp AS (SELECT final_label, bool_or(pnc_norm IS NOT NULL) AS has_pnc FROM linked GROUP BY ALL),
{sounds},
base AS (
SELECT r.rid AS unique_id, r.record_id, r.source, l.final_label AS comp, NOT c.has_pnc AS open,
       r.pnc_norm, r.nomis, r.surname_n, r.forename_n, r.date_of_birth AS dob,
       strftime(r.date_of_birth, '%Y-%m-%d') AS dob_s, year(r.date_of_birth) AS birth_year,
       strftime(r.date_of_birth, '%m-%d') AS birth_md,
       year(r.date_of_birth) // 10 AS birth_decade,
       year(r.date_of_birth) * 10000 + least(month(r.date_of_birth), day(r.date_of_birth)) * 100
           + greatest(month(r.date_of_birth), day(r.date_of_birth)) AS dob_key,
       left(r.surname_n, 1) AS s1, left(r.forename_n, 1) AS f1,
       CASE WHEN r.sex IN ('M', 'F') THEN r.sex END AS sex, nullif(upper(trim(r.area)), '') AS area,
       {keys}
FROM id_records r JOIN linked l USING (rid) JOIN comp c USING (final_label))
-- the blocking keys made of other columns of the record (pipeline.link.blocking)
SELECT *, {sx_pair} AS sx_pair, least(s1, f1) || greatest(s1, f1) AS initials FROM base
""".format(keys=", ".join(f"{sql} AS {name}" for name, sql in KEY_COLUMNS.items()), sx_pair=SX_PAIR, sounds=SOUNDS)
_RECORD_COLUMNS = ("unique_id", "source", "comp", "open", "pnc_norm", "nomis", "surname_n", "forename_n", "dob",
                   "dob_s", "birth_year", "birth_md", "birth_decade", "dob_key", "s1", "f1", "sex", "area",
                   *KEY_COLUMNS, "sx_pair", "initials")


def _level(sql: str, label: str, m: float, u: float, *, null: bool = False, tf: str | None = None) -> dict:
    level = {"sql_condition": sql, "label_for_charts": label, "m_probability": m, "u_probability": u}
    if null:
        level = {"sql_condition": sql, "label_for_charts": label, "is_null_level": True}
    if tf:
        level.update(tf_adjustment_column=tf, tf_adjustment_weight=1.0)
    return level


def _name_levels(col: str, other: str, what: str) -> list[dict]:
    """Levels for one name column; `other` is the other name column (for a swap). The m and u
    values are priors, replaced by estimation: they let a model run on a handful of records."""
    lc, rc, lo, ro = f'"{col}_l"', f'"{col}_r"', f'"{other}_l"', f'"{other}_r"'
    return [
        _level(f"{lc} IS NULL OR {rc} IS NULL", f"{what} missing", 0, 0, null=True),
        _level(f"{lc} = {rc}", f"{what} the same", 0.85, 0.001, tf=col),
        # a swap, allowing for a typo or variant in either name as well
        _level(f"jaro_winkler_similarity({lc}, {ro}) >= 0.9 AND jaro_winkler_similarity({lo}, {rc}) >= 0.9",
               "forename and surname swapped", 0.01, 0.001, tf=col),
        _level(f"length({lc}) >= 4 AND length({rc}) >= 4 AND (starts_with({lc}, {rc}) OR starts_with({rc}, {lc}) "
               f"OR ends_with({lc}, {rc}) OR ends_with({rc}, {lc}))", f"one {what} part of the other", 0.03, 0.0005),
        _level(f"damerau_levenshtein({lc}, {rc}) <= 1", f"{what} one letter different", 0.05, 0.001),
        _level(f"jaro_winkler_similarity({lc}, {rc}) >= 0.92", f"{what} very similar", 0.02, 0.003),
        _level(f"jaro_winkler_similarity({lc}, {rc}) >= 0.80", f"{what} similar", 0.02, 0.02),
        _level(f"left({lc}, 2) = left({rc}, 2)", f"{what} starts the same", 0.01, 0.05),
        _level("ELSE", f"{what} different", 0.01, 0.9),
    ]


def _comparisons() -> list[dict]:
    dob_l, dob_r = '"dob_l"', '"dob_r"'
    return [
        {"output_column_name": "surname", "comparison_description": "surname",
         "comparison_levels": _name_levels("surname_n", "forename_n", "surname")},
        {"output_column_name": "forename", "comparison_description": "first forename",
         "comparison_levels": _name_levels("forename_n", "surname_n", "first forename")},
        {"output_column_name": "dob", "comparison_description": "date of birth",
         "comparison_levels": [
             _level(f"{dob_l} IS NULL OR {dob_r} IS NULL", "date of birth missing", 0, 0, null=True),
             _level(f"{dob_l} = {dob_r}", "date of birth the same", 0.9, 0.0001),
             _level(f"year({dob_l}) = year({dob_r}) AND month({dob_l}) = day({dob_r}) "
                    f"AND day({dob_l}) = month({dob_r})", "day and month transposed", 0.02, 0.00001),
             _level('damerau_levenshtein("dob_s_l", "dob_s_r") <= 1', "date of birth one digit different",
                    0.03, 0.001),
             # a year keyed one out (1989 for 1990: two digits) keeps the day and the month
             _level(f"month({dob_l}) = month({dob_r}) AND day({dob_l}) = day({dob_r}) "
                    f"AND abs(year({dob_l}) - year({dob_r})) = 1", "year of birth one out", 0.01, 0.0001),
             _level(f"abs(datediff('day', {dob_l}, {dob_r})) <= 366", "date of birth within a year", 0.01, 0.02),
             _level("ELSE", "date of birth different", 0.04, 0.98),
         ]},
        {"output_column_name": "sex", "comparison_description": "sex",
         "comparison_levels": [
             _level('"sex_l" IS NULL OR "sex_r" IS NULL', "sex not recorded", 0, 0, null=True),
             _level('"sex_l" = "sex_r"', "sex the same", 0.98, 0.55),
             _level("ELSE", "sex different", 0.02, 0.45),
         ]},
        {"output_column_name": "area", "comparison_description": "area",
         "comparison_levels": [
             _level('"area_l" IS NULL OR "area_r" IS NULL', "area not recorded", 0, 0, null=True),
             _level('"area_l" = "area_r"', "area the same", 0.8, 0.2),
             _level("ELSE", "area different", 0.2, 0.8),
         ]},
        # Two records of one agency are the same person less often than two of different agencies
        # (an agency rarely opens a second record for someone it knows): the labelled pairs say by
        # how much, so a duplicate within an agency needs stronger evidence than a cross-agency link.
        {"output_column_name": "agency", "comparison_description": "agency",
         "comparison_levels": [
             _level('"source_l" IS NULL OR "source_r" IS NULL', "agency unknown", 0, 0, null=True),
             _level('"source_l" = "source_r"', "same agency", 0.001, 0.6),
             _level("ELSE", "different agencies", 0.999, 0.4),
         ]},
    ]


def settings_dict(within_source: bool, prior: float = 1e-4) -> dict:
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "unique_id",
        "probability_two_random_records_match": prior,
        "comparisons": _comparisons(),
        "blocking_rules_to_generate_predictions": [
            {"blocking_rule": rule, "sql_dialect": "duckdb"} for rule in blocking_rules(default_blocks(within_source))],
        "retain_matching_columns": True,
        "retain_intermediate_calculation_columns": True,
        "additional_columns_to_retain": [],
        "em_convergence": 0.001,
        "max_iterations": 20,
    }


# --- running Splink -------------------------------------------------------------------------


def records_table(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Step 1: the records as Splink reads them (needs the `id_records` and `linked` temp tables)."""
    run_sql(con, "probabilistic: prob_records", _RECORDS)
    cols = ", ".join(_RECORD_COLUMNS)
    return run_sql(con, "probabilistic: read prob_records", f"SELECT {cols} FROM prob_records").fetch_arrow_table()


@dataclass
class Estimate:
    model: dict  # the Splink model (settings with trained m and u), as JSON-ready data
    m_from: str  # "pnc_labels" or "expectation_maximisation"
    labelled_pairs: int
    records: int


# Splink's scratch connection. At a million people the scoring needs about 1 GB that DuckDB cannot
# spill; at a 1 GB limit it failed now and then ("failed to pin block"). The warehouse connection
# gives its cache back while Splink runs (`_warehouse_memory_lent`), so the peak stays the same.
SCRATCH_MEMORY_LIMIT = "1536MB"
WAREHOUSE_LIMIT_WHILE_SPLINK = "384MB"


@contextlib.contextmanager
def _warehouse_memory_lent(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Shrink the warehouse connection's buffer pool (it evicts cached blocks) while Splink's
    scratch connection works, then restore it (the warehouse's own limit: the setting reads back
    rounded)."""
    try:
        con.execute(f"SET memory_limit = '{WAREHOUSE_LIMIT_WHILE_SPLINK}'")
    except duckdb.Error:  # it holds pinned blocks it cannot give back: keep its limit
        log.debug("the warehouse connection kept its memory limit during probabilistic linking")
    try:
        yield
    finally:
        con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")


@functools.cache
def _spill_directory() -> str:
    """A private (0700) folder for the scratch connection to spill to, removed at exit. Without one
    an in-memory DuckDB cannot spill, and scoring a million people failed now and then at the
    limit ("failed to pin block"). TMPDIR decides where it is: put it on an encrypted volume when
    the warehouse is encrypted."""
    path = tempfile.mkdtemp(prefix="iom-splink-")
    atexit.register(shutil.rmtree, path, True)
    return path


def _splink_con(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    scratch = duckdb.connect(":memory:")
    scratch.execute(f"SET memory_limit = '{SCRATCH_MEMORY_LIMIT}'")
    spill = _spill_directory().replace("'", "''")
    scratch.execute(f"SET temp_directory = '{spill}'")
    scratch.execute("SET preserve_insertion_order = false")
    if threads:
        scratch.execute(f"SET threads = {int(threads)}")
    return scratch


def _quiet_splink() -> None:
    for name in ("splink", "splink.internals"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _linker(records: pa.Table, settings: dict, scratch: duckdb.DuckDBPyConnection):
    from splink import DuckDBAPI, Linker  # heavy (pandas, sqlglot): only when linking

    _quiet_splink()
    api = DuckDBAPI(connection=scratch)
    return Linker(api.register(records, table_name="records"), settings)


def _labelled_pairs(records: pa.Table, scratch: duckdb.DuckDBPyConnection) -> int:
    scratch.register("labelled_records", records)
    pairs = scratch.execute(
        "SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM (SELECT count(*) AS n FROM labelled_records "
        "WHERE pnc_norm IS NOT NULL GROUP BY pnc_norm)").fetchone()[0]
    scratch.unregister("labelled_records")
    return int(pairs)


def _floor_m(model: dict, floor: float = 1e-5) -> dict:
    """A level never seen among the labelled pairs gets a small m, not zero: zero would make
    one field veto a pair whatever the others say (a swap the labels happen not to show)."""
    for comparison in model["comparisons"]:
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        for level in levels:
            m = level.get("m_probability")
            if m is None or (isinstance(m, float) and math.isnan(m)) or m < floor:
                level["m_probability"] = floor
            u = level.get("u_probability")
            if u is None or (isinstance(u, float) and math.isnan(u)) or u < floor:
                level["u_probability"] = floor
        total = sum(lv["m_probability"] for lv in levels)
        for level in levels:
            level["m_probability"] /= total
    return model


SWAP_LABEL = "forename and surname swapped"
_EXACT_LEVELS = {"surname": "surname the same", "forename": "first forename the same", "dob": "date of birth the same"}


def _exact_recall(model: dict) -> float:
    """The share of true pairs the exact names-and-date rule finds, by the m values: the product
    of the m of surname, forename and date of birth the same (kept within 0.05 to 0.95)."""
    recall = 1.0
    for comparison in model["comparisons"]:
        label = _EXACT_LEVELS.get(comparison["output_column_name"])
        for level in comparison["comparison_levels"]:
            if label and level["label_for_charts"] == label and level.get("m_probability"):
                recall *= float(level["m_probability"])
    return min(0.95, max(0.05, recall))


def _calibrate(model: dict, constant_share: float = 0.999) -> dict:
    """Two corrections after estimation, for data the estimates cannot see:
    - a swap of two names is about as likely by chance as the same two names in order (a sample
      of random pairs almost never meets a swap: its floored u made a swap of two common names
      outweigh a different date of birth). The swap is one event seen by both name comparisons:
      the first takes the u of its exact level (weight log2(m / u_exact), the swap's own
      evidence), the second a u of m times its exact level's (weight log2(1 / u_exact): given
      the first name swapped, the second is too), so that the pair weighs
      log2(m / (u_exact_surname * u_exact_forename)), the same two names in order less the
      rarity of a swap; the term-frequency adjustment then makes common names weigh less;
    - a field that takes one level in nearly every pair of the sample (every record of one agency,
      one area for all) tells no pair from another: its levels take m = u, a weight of zero,
      whatever expectation maximisation made of it."""
    swaps_seen = 0
    for comparison in model["comparisons"]:
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        exact = next((lv for lv in levels if lv.get("tf_adjustment_column") and lv["label_for_charts"] != SWAP_LABEL),
                     None)
        for level in levels:
            if level["label_for_charts"] == SWAP_LABEL and exact is not None:
                share = 1.0 if swaps_seen == 0 else level["m_probability"]
                level["u_probability"] = max(share * exact["u_probability"], 1e-12)
                swaps_seen += 1
        if max(lv["u_probability"] for lv in levels) >= constant_share:
            for level in levels:
                level["m_probability"] = level["u_probability"]
    return model


def _u_sample_sql(size: int, seed: int) -> str:
    return f"SELECT * FROM sample_source ORDER BY hash(unique_id + {int(seed)}), unique_id LIMIT {int(size)}"


def _u_from_sample(records: pa.Table, u_pairs: float, seed: int) -> dict:
    """u of every level from all pairs of a fixed sample of records (a hash of the id and the seed):
    the same u for the same records, at the speed of Splink's unseeded sampling (its seeded
    sampling took 25 s where this takes one)."""
    size = max(2, min(records.num_rows, int(math.sqrt(2 * u_pairs))))
    scratch = _splink_con()
    try:
        scratch.register("sample_source", records)
        sample = scratch.execute(_u_sample_sql(size, seed)).fetch_arrow_table()
        scratch.unregister("sample_source")
        linker = _linker(sample, settings_dict(within_source=True), scratch)
        linker.training.estimate_u_using_random_sampling(max_pairs=size * size, min_count_per_level=None,
                                                         num_chunks=1)
        model = linker.misc.save_model_to_json()
    finally:
        scratch.close()
    return {(c["output_column_name"], lv["label_for_charts"]): lv.get("u_probability")
            for c in model["comparisons"] for lv in c["comparison_levels"] if not lv.get("is_null_level")}


def _with_every_comparison(model: dict, before: dict) -> dict:
    """The model with every comparison of the settings it was estimated from, in their order. An
    expectation maximisation that fails on its block (too few pairs, as in one agency's small
    extract) leaves Splink's settings without the comparisons that block fixed; such a comparison
    keeps its sampled u and prior m."""
    estimated = {c["output_column_name"]: c for c in model["comparisons"]}
    missing = [c["output_column_name"] for c in before["comparisons"] if c["output_column_name"] not in estimated]
    if missing:
        log.info("comparisons not estimated (their blocks could not be), priors kept: %s", ", ".join(missing))
    model["comparisons"] = [estimated.get(c["output_column_name"]) or copy.deepcopy(c) for c in before["comparisons"]]
    return model


def _with_u(settings: dict, u_values: dict) -> dict:
    """The settings with the sampled u values (a level the sample never met keeps its prior)."""
    for comparison in settings["comparisons"]:
        for level in comparison["comparison_levels"]:
            value = u_values.get((comparison["output_column_name"], level["label_for_charts"]))
            if not level.get("is_null_level") and value is not None and not math.isnan(value) and value > 0:
                level["u_probability"] = value
    return settings


def estimate(records: pa.Table, within_source: bool, seed: int, u_pairs: float) -> Estimate:
    """Step 2: u by random sampling, m from PNC-linked pairs (or EM), the prior from the
    deterministic rules; returns the model as data."""
    scratch = _splink_con()
    try:
        labelled = _labelled_pairs(records, scratch)
        settings = _with_u(settings_dict(within_source), _u_from_sample(records, u_pairs, seed))
        before = copy.deepcopy(settings)  # Splink may change its settings in place
        linker = _linker(records, settings, scratch)
        training = linker.training
        deterministic = ["l.pnc_norm = r.pnc_norm", "l.nomis = r.nomis",
                         "l.surname_n = r.surname_n AND l.forename_n = r.forename_n AND l.dob = r.dob"]
        try:
            training.estimate_probability_two_random_records_match(deterministic, recall=0.8)
        except Exception as exc:  # no deterministic pair at all (a tiny or identifier-free extract)
            log.info("prior not estimated (%s): kept at its default", type(exc).__name__)
        if labelled >= MIN_LABELLED_PAIRS:
            training.estimate_m_from_label_column("pnc_norm")
            m_from = "pnc_labels"
        else:
            from splink import block_on

            for rule in (block_on("dob"), block_on("surname_n", "forename_n")):
                try:
                    training.estimate_parameters_using_expectation_maximisation(rule)
                except Exception as exc:  # too few pairs in a block to estimate from
                    log.info("EM on a block not run (%s): priors kept", type(exc).__name__)
            m_from = "expectation_maximisation"
            # Without labels only the exact names-and-date rule finds pairs, and the share of true
            # pairs it finds is what the m values say: the product of their exact levels' m
            # (0.8 assumed otherwise, where a noisy extract's exact rule finds under half).
            recall = _exact_recall(linker.misc.save_model_to_json())
            try:
                training.estimate_probability_two_random_records_match(deterministic[2:], recall=recall)
            except Exception as exc:
                log.info("prior not estimated again (%s): kept", type(exc).__name__)
        model = _calibrate(_floor_m(_with_every_comparison(linker.misc.save_model_to_json(), before)))
    finally:
        scratch.close()
    prior = model.get("probability_two_random_records_match") or 0.0
    if not 0.0 < prior < 1.0:
        # no pair met the deterministic rules (one agency's extract with no shared identifier or
        # exact names and date): the estimate is 0, which no match weight can start from
        default = settings_dict(within_source)["probability_two_random_records_match"]
        log.info("prior estimated as %s: the default %s kept", prior, default)
        model["probability_two_random_records_match"] = default
    log.info("estimated the linkage model on %d records (m from %s, %d labelled pairs)",
             records.num_rows, m_from, labelled)
    return Estimate(model, m_from, labelled, records.num_rows)


def predict(records: pa.Table, model: dict, within_source: bool, lower: float,
            blocks: tuple[tuple[Block, str], ...] | None = None) -> tuple[pa.Table, int]:
    """Step 3: every blocked candidate pair at or above the lower threshold, with per-field
    weights (log2 Bayes factors, term frequency included) and levels; and the pairs compared."""
    import copy

    settings = copy.deepcopy(model)
    settings["blocking_rules_to_generate_predictions"] = [
        {"blocking_rule": rule, "sql_dialect": "duckdb"}
        for rule in blocking_rules(blocks if blocks is not None else default_blocks(within_source))]
    # the weights and levels only: the compared values (retain_matching_columns) tripled the time at 1M
    settings["retain_intermediate_calculation_columns"] = True
    settings["retain_matching_columns"] = False
    scratch = _splink_con()
    try:
        linker = _linker(records, settings, scratch)
        # the blocked pairs first (Splink keeps them for predict): their count is the pairs compared
        blocked = linker.inference.compute_blocked_pairs_for_predict()
        compared = scratch.execute(f"SELECT count(*) FROM {blocked.physical_name}").fetchone()[0]
        frame = linker.inference.predict(threshold_match_probability=lower, warning_mode="never")
        table = frame.physical_name
        weights = ", ".join(
            f"mw_{f} + coalesce(mw_tf_adj_{f}, 0) AS w_{f}" if f in ("surname", "forename") else f"mw_{f} AS w_{f}"
            for f in FIELDS)
        level_cases = _level_cases(model)
        result = scratch.execute(
            f"""SELECT unique_id_l, unique_id_r, match_probability, match_weight, {weights}, {level_cases}
                FROM {table}""").fetch_arrow_table()
    finally:
        scratch.close()
    return result, int(compared)


def _level_cases(model: dict) -> str:
    """Each comparison's level, named from its match weight: without the compared values
    (`retain_matching_columns`) Splink hands over no gamma columns, and each level's weight
    log2(m / u) is its own (the null level's is 0; a level whose m equals its u would read as it)."""
    cases = []
    for comparison in model["comparisons"]:
        name = comparison["output_column_name"]
        whens, null_label = [], "unknown"
        for level in comparison["comparison_levels"]:
            label = level["label_for_charts"].replace("'", "")
            if level.get("is_null_level"):
                null_label = label
                continue
            weight = math.log2(level["m_probability"] / level["u_probability"])
            whens.append(f"WHEN abs(mw_{name} - ({weight!r})) < 1e-6 THEN '{label}'")
        cases.append(f"CASE {' '.join(whens)} WHEN mw_{name} = 0 THEN '{null_label}' END AS level_{name}")
    return ", ".join(cases)


# --- the step as the link runs it --------------------------------------------------------------

PAIRS_DDL = f"""CREATE OR REPLACE TABLE link_pairs (  -- [one compared pair at or above the lower threshold]
    record_id_l VARCHAR NOT NULL, record_id_r VARCHAR NOT NULL, match_probability DOUBLE, match_weight DOUBLE,
    {", ".join(f"w_{f} DOUBLE" for f in FIELDS)}, {", ".join(f"level_{f} VARCHAR" for f in FIELDS)},
    zone VARCHAR NOT NULL, model_version INTEGER)"""

_STORE_PAIRS = f"""
INSERT INTO link_pairs
SELECT least(a.record_id, b.record_id), greatest(a.record_id, b.record_id), p.match_probability, p.match_weight,
       {", ".join(f"p.w_{f}" for f in FIELDS)}, {", ".join(f"p.level_{f}" for f in FIELDS)},
       CASE WHEN p.match_probability >= CASE WHEN a.source = b.source THEN $upper_within ELSE $upper END
            THEN 'auto_link' ELSE 'review' END, $version
FROM predicted p JOIN prob_records a ON a.unique_id = p.unique_id_l JOIN prob_records b ON b.unique_id = p.unique_id_r
"""


@dataclass
class ScoredPairs:
    model_version: int | None
    model_sha256: str | None
    estimated: str | None  # why a model was estimated at this link (None: the stored one was used)
    compared: int  # records handed to Splink
    pairs: int  # pairs at or above the lower threshold
    auto_link: int
    review: int
    compared_pairs: int = 0  # pairs the blocks generated (each scored)
    blocks: tuple[str, ...] = ()  # the blocks used (the core ones and the extras within the pair budget)
    seconds: float = 0.0  # the whole step: records, estimation (if any), blocking and scoring


def score_pairs(con: duckdb.DuckDBPyConnection, settings, reestimate: bool = False) -> ScoredPairs:
    """Steps 1 to 3 on the `id_records` and `linked` tables of the link under way: `link_pairs`."""
    from pipeline.link.models import estimate_reason, latest_model

    run_sql(con, "probabilistic: link_pairs", PAIRS_DDL)
    if not settings.probabilistic:
        return ScoredPairs(None, None, None, 0, 0, 0, 0)
    started = time.perf_counter()
    records = records_table(con)
    current = latest_model(con)
    reason = estimate_reason(current, records.num_rows, settings, reestimate, settings_dict(settings.within_source))
    with _warehouse_memory_lent(con):
        current, estimated = _estimated(con, records, current, reason, settings)
    open_records = run_sql(con, "probabilistic: open records",
                           "SELECT count(*) FILTER (WHERE open) FROM prob_records").fetchone()[0]
    compared, chosen, predicted = 0, (), None
    estimated_at = time.perf_counter()
    if open_records and records.num_rows > 1:
        found = choose_blocks(con, settings.pair_budget, settings.within_source, settings.pair_budget_minimum)
        chosen = found.blocks
        with _warehouse_memory_lent(con):
            predicted, compared = predict(records, current.model, settings.within_source, settings.lower_threshold,
                                          chosen)
    if predicted is not None:
        con.register("predicted", predicted)
        run_sql(con, "probabilistic: store pairs", _STORE_PAIRS,
                {"upper": settings.upper_threshold, "upper_within": settings.upper_threshold_within,
                 "version": current.version})
        con.unregister("predicted")
    counts = run_sql(con, "probabilistic: count pairs",
                     "SELECT count(*), count(*) FILTER (WHERE zone = 'auto_link') FROM link_pairs").fetchone()
    run_sql(con, "probabilistic: drop prob_records", "DROP TABLE IF EXISTS prob_records")
    seconds = time.perf_counter() - started
    log.info("probabilistic linking: %d records, %d pairs compared, %d at or above %.2f (%d at or above %.2f across "
             "agencies or %.2f within one), %.1f s (%.1f s to the model, %.1f s blocking and scoring)",
             records.num_rows, compared, counts[0], settings.lower_threshold, counts[1], settings.upper_threshold,
             settings.upper_threshold_within, seconds, estimated_at - started,
             time.perf_counter() - estimated_at)
    return ScoredPairs(current.version, current.sha256, estimated, records.num_rows, counts[0], counts[1],
                       counts[0] - counts[1], compared, tuple(f"{b.name} ({scope})" for b, scope in chosen),
                       round(seconds, 2))


def _estimated(con, records: pa.Table, current, reason: str | None, settings):
    """The model to score with and why it was estimated now (None: the stored one)."""
    from pipeline.link.models import MIN_ESTIMATION_RECORDS, store_model

    estimated = None
    if reason is not None:
        if records.num_rows < MIN_ESTIMATION_RECORDS:
            model, m_from, labelled = settings_dict(settings.within_source), "priors", 0
            reason = f"{reason}; fewer than {MIN_ESTIMATION_RECORDS:,} records: the priors, not estimated"
        else:
            est = estimate(records, settings.within_source, settings.seed, settings.u_sample_pairs)
            model, m_from, labelled = est.model, est.m_from, est.labelled_pairs
        current = store_model(con, model, reason, records.num_rows, labelled, m_from)
        estimated = reason
    return current, estimated

"""Which pairs of records the probabilistic step compares: blocks, chosen by a pair budget.

Each block is an equality join on columns of `prob_records` (`pipeline.link.probabilistic`), so
that a corrupted copy still meets its original on the part it kept:
- the core blocks, always used (together about one pair per record at a million people):
  the date of birth with day and month in either order and an initial (a typo, a nickname, half
  a double-barrelled name keeps one), the initials and day, month and decade (a wrong digit of the
  year), both names exact with the year or the day and month (a wrong digit of the day), or with
  a missing date on one side;
- the extra blocks, for a copy with both a name and its date corrupted, or a date missing and a
  name mistyped: both names exact in either order without the date, the Soundex codes of both
  names in either order with the year or the day and month, one name exact and the other's
  Soundex code, the date alone, and so on, in `EXTRA_BLOCKS` order (most true pairs per pair
  compared first).

**The pair budget** (`[linking] pair_budget`, pairs per record, and `pair_budget_minimum`): a
candidate block is used only if the pairs it would generate, added to those of the blocks already
chosen, stay within `pair_budget` times the number of records, or `pair_budget_minimum` pairs
if that is more (a million pairs take a few seconds whatever the extract, so a small extract gets
every block); a candidate over the budget is left out and the next one tried. The pairs are
counted in SQL before anything is compared, cheaply (one group-by per block on a hash of its
keys): per key, the pairs of records of which at least one is in a component without a PNC id,
less those inside one such component, across agencies and within one; above 100,000 records, on
a fixed sample of 100,000 (a hash of the record id), scaled by the square of the share sampled.
The count is an upper bound (a pair two blocks meet counts twice), so the budget is conservative. A million people stay
fast because the heavy blocks (a common name and no date) are left out there.

Soundex is computed in SQL (`soundex_sql`): DuckDB has no phonetic function, and the same SQL
runs on Spark (`translate`, `regexp_replace`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb

from pipeline.warehouse import run_sql

log = logging.getLogger(__name__)


def soundex_sql(col: str) -> str:
    """American Soundex of a normalised name (upper-case letters only): the first letter and
    three digits. H and W are dropped before adjacent codes collapse (they do not separate two
    equal codes), vowels separate them; RE2 has no back-references, so each digit's runs are
    collapsed by a call of their own."""
    letters, codes = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123012#02245501262301#202"
    first = f"translate(left({col}, 1), '{letters}', '{codes.replace('#', '0')}')"
    code = f"{first} || replace(translate(substr({col}, 2), '{letters}', '{codes}'), '#', '')"
    for digit in "123456":
        code = f"regexp_replace({code}, '{digit}{digit}+', '{digit}', 'g')"
    rest = f"replace(substr({code}, 2), '0', '')"
    return f"CASE WHEN {col} IS NOT NULL THEN left(left({col}, 1) || {rest} || '000', 4) END"


# The blocking columns of `prob_records`, beyond the compared ones (appended to its SELECT).
KEY_COLUMNS = {
    # Soundex codes from `sounds` (each distinct name coded once, not each record)
    "sx_s": "(SELECT code FROM sounds WHERE name = r.surname_n)",
    "sx_f": "(SELECT code FROM sounds WHERE name = r.forename_n)",
    # both names in either order: a swap meets its original
    "names_key": "CASE WHEN r.surname_n IS NOT NULL AND r.forename_n IS NOT NULL THEN "
                 "least(r.surname_n, r.forename_n) || '|' || greatest(r.surname_n, r.forename_n) END",
    # day and month in either order: a transposed date meets its original
    "dm_key": "least(month(r.date_of_birth), day(r.date_of_birth)) * 100 "
              "+ greatest(month(r.date_of_birth), day(r.date_of_birth))",
}
SOUNDS = f"""sounds AS MATERIALIZED (SELECT name, {soundex_sql('name')} AS code FROM (
    SELECT surname_n AS name FROM id_records WHERE surname_n IS NOT NULL
    UNION SELECT forename_n FROM id_records WHERE forename_n IS NOT NULL))"""
# the Soundex codes of both names in either order (computed from sx_s and sx_f)
SX_PAIR = "CASE WHEN sx_s IS NOT NULL AND sx_f IS NOT NULL THEN least(sx_s, sx_f) || greatest(sx_s, sx_f) END"


@dataclass(frozen=True)
class Block:
    name: str
    keys: tuple[str, ...]  # columns of prob_records equal on both sides (what is counted)
    rules: tuple[str, ...] = ()  # the join conditions, when not the plain equality of `keys`
    # pairs per key group from {n} records, {c} of them in PNC-holding components, {z} without a date of birth
    pairs: str = "{n} * ({n} - 1) / 2 - {c} * ({c} - 1) / 2"

    def conditions(self) -> tuple[str, ...]:
        return self.rules or (" AND ".join(f"l.{k} = r.{k}" for k in self.keys),)


_NO_DOB_PAIRS = "{z} * ({n} - {z}) + {z} * ({z} - 1) / 2"
CORE_BLOCKS = (
    Block("date of birth and surname initial", ("dob_key", "s1")),
    Block("date of birth and forename initial", ("dob_key", "f1")),
    Block("date of birth and initials swapped", ("dob_key", "initials"),
          ("l.dob_key = r.dob_key AND l.s1 = r.f1 AND l.f1 = r.s1",)),
    Block("initials, day, month and decade of birth", ("birth_md", "birth_decade", "s1", "f1")),
    Block("names and year of birth", ("surname_n", "forename_n", "birth_year")),
    Block("names and day and month of birth", ("surname_n", "forename_n", "birth_md")),
    # one rule per side, so that the missing date filters its side before the join
    Block("names, a date of birth missing", ("surname_n", "forename_n"),
          ("l.surname_n = r.surname_n AND l.forename_n = r.forename_n AND l.dob IS NULL",
           "l.surname_n = r.surname_n AND l.forename_n = r.forename_n AND r.dob IS NULL"), _NO_DOB_PAIRS),
)
EXTRA_BLOCKS = (
    Block("names in either order", ("names_key",)),
    Block("Soundex of both names and year of birth", ("sx_pair", "birth_year")),
    Block("Soundex of both names and day and month of birth", ("sx_pair", "dm_key")),
    Block("forename and Soundex of surname", ("forename_n", "sx_s")),
    Block("surname and Soundex of forename", ("surname_n", "sx_f")),
    Block("surname, forename initial and decade of birth", ("surname_n", "f1", "birth_decade")),
    Block("forename, surname initial and decade of birth", ("forename_n", "s1", "birth_decade")),
    Block("Soundex of both names, a date of birth missing", ("sx_pair",),
          ("l.sx_pair = r.sx_pair AND l.dob IS NULL", "l.sx_pair = r.sx_pair AND r.dob IS NULL"), _NO_DOB_PAIRS),
    Block("surname and year of birth", ("surname_n", "birth_year")),
    Block("forename and year of birth", ("forename_n", "birth_year")),
    Block("surname and day and month of birth", ("surname_n", "dm_key")),
    Block("forename and day and month of birth", ("forename_n", "dm_key")),
    Block("date of birth", ("dob_key",)),
    Block("initials and year of birth", ("s1", "f1", "birth_year")),
    Block("Soundex of both names", ("sx_pair",)),
    Block("surname and forename initial", ("surname_n", "f1")),
)
ALL_BLOCKS = CORE_BLOCKS + EXTRA_BLOCKS


ACROSS, WITHIN, NARROW = "across agencies", "within an agency", "within an agency, initials and year agreeing"
# Two records of one agency: duplicates within an agency are rare, and at a million people most
# pairs a block makes within one would be police nominals of different people; so the core
# blocks compare them only when the initials and the year of birth agree as well, unless the
# budget has room for the core blocks within an agency in full.
_SCOPES = {ACROSS: " AND l.source <> r.source", WITHIN: " AND l.source = r.source",
           NARROW: " AND l.source = r.source AND l.s1 = r.s1 AND l.f1 = r.f1 AND l.birth_year = r.birth_year"}
_SOURCES = ("police", "probation", "prison")


@dataclass(frozen=True)
class Chosen:
    blocks: tuple[tuple[Block, str], ...]  # (block, scope): ACROSS, WITHIN or NARROW
    counted_pairs: int  # the upper bound of the pairs the chosen blocks generate
    budget_pairs: int
    left_out: tuple[tuple[str, int], ...]  # (block and scope, its pairs) over the budget

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"{b.name} ({scope})" for b, scope in self.blocks)


def _key_column(block: Block, narrow: bool = False) -> str:
    return f"k{ALL_BLOCKS.index(block)}" + ("n" if narrow else "")


# Above this many records the pairs are counted on a fixed sample of them (a hash of the record)
# and scaled by the square of the share sampled: a pair is in the sample when both its records are.
COUNT_SAMPLE = 100_000


def _keys_sql(sample: int = COUNT_SAMPLE) -> str:
    """[one record of prob_records]: per block, a hash of its keys (NULL when one is missing),
    and for the core blocks the same with the initials and the year (narrowed within an agency);
    the agency as a number; whether its component has no PNC id and more than one record (its
    pairs inside are never compared). Built once a link: each count then groups one integer."""
    def key(block: Block, extra: tuple[str, ...] = ()) -> str:
        cols = block.keys + extra
        return f"CASE WHEN {' AND '.join(f'{c} IS NOT NULL' for c in cols)} THEN hash({', '.join(cols)}) END"

    columns = [f"{key(b)} AS {_key_column(b)}" for b in ALL_BLOCKS]
    columns += [f"{key(b, ('s1', 'f1', 'birth_year'))} AS {_key_column(b, True)}" for b in CORE_BLOCKS]
    sources = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(_SOURCES))
    return f"""CREATE OR REPLACE TEMP TABLE block_keys AS
               WITH multi AS (SELECT comp FROM prob_records WHERE open GROUP BY comp HAVING count(*) > 1)
               SELECT comp, open, CASE source {sources} END::UTINYINT AS src, dob IS NULL AS nodob,
                      comp IN (SELECT comp FROM multi) AS multi, {", ".join(columns)}
               FROM prob_records
               WHERE hash(unique_id) % 1000003 < 1000003.0 * {int(sample)} / (SELECT count(*) FROM prob_records)"""


def _count_sql(block: Block, narrow: bool = False) -> str:
    """The pairs of a block across agencies and within one: per key, the block's pair count of all
    its records less that of each agency's (pairs within one), less the pairs inside one open
    component (never compared: one component already)."""
    col = _key_column(block, narrow)

    def pairs(n: str, c: str, z: str) -> str:
        return f"({block.pairs.format(n=n, c=c, z=z)})"

    return f"""WITH by_source AS (
                   SELECT {col} AS key, count(*) AS n, count(*) FILTER (WHERE NOT open) AS c,
                          count(*) FILTER (WHERE nodob) AS z
                   FROM block_keys WHERE {col} IS NOT NULL GROUP BY {col}, src),
               per_key AS (
                   SELECT key, {pairs("sum(n)", "sum(c)", "sum(z)")} AS total, sum({pairs("n", "c", "z")}) AS within
                   FROM by_source GROUP BY key),
               in_component AS (  -- records of open components of several records: never compared
                   SELECT {col} AS key, comp, count(*) AS n, count(*) FILTER (WHERE nodob) AS z
                   FROM block_keys WHERE multi AND {col} IS NOT NULL GROUP BY {col}, comp, src),
               same AS (
                   SELECT key, sum(total) AS total, sum(within) AS within FROM (
                       SELECT key, {pairs("sum(n)", "0", "sum(z)")} AS total, sum({pairs("n", "0", "z")}) AS within
                       FROM in_component GROUP BY key, comp)
                   GROUP BY key)
               SELECT coalesce(sum(t.total - t.within - coalesce(s.total - s.within, 0)), 0)::BIGINT,
                      coalesce(sum(t.within - coalesce(s.within, 0)), 0)::BIGINT
               FROM per_key t LEFT JOIN same s USING (key)"""


def block_pairs(con: duckdb.DuckDBPyConnection, block: Block, narrow: bool = False) -> tuple[int, int]:
    """The pairs a block would generate on `prob_records` across agencies and within one (upper
    bounds; see the module); `narrow`: within one only where the initials and the year agree."""
    if not run_sql(con, "blocking: keys built", "SELECT count(*) FROM duckdb_tables() "
                   "WHERE table_name = 'block_keys' AND temporary").fetchone()[0]:
        run_sql(con, "blocking: block_keys", _keys_sql())
    across, within = run_sql(con, f"blocking: count {block.name}", _count_sql(block, narrow)).fetchone()
    sampled, records = run_sql(con, "blocking: sample share", "SELECT (SELECT count(*) FROM block_keys), "
                               "(SELECT count(*) FROM prob_records)").fetchone()
    scale = (records / sampled) ** 2 if sampled else 1.0
    return int(round(across * scale)), int(round(within * scale))


def choose_blocks(con: duckdb.DuckDBPyConnection, budget_per_record: float, within_source: bool = True,
                  minimum: int = 0) -> Chosen:
    """The core blocks (across agencies; within one, narrowed), then in order each candidate that
    keeps the counted pairs within the budget: the core blocks within an agency in full, then each
    extra block across agencies and within one. A candidate over the budget is left out and the
    next tried. Deterministic: the same records and budget give the same blocks."""
    records = run_sql(con, "blocking: records", "SELECT count(*) FROM prob_records").fetchone()[0]
    budget = max(int(budget_per_record * records), int(minimum))
    run_sql(con, "blocking: block_keys", _keys_sql())
    counts = {b: block_pairs(con, b) for b in ALL_BLOCKS}
    chosen = [(b, ACROSS) for b in CORE_BLOCKS]
    total = sum(counts[b][0] for b in CORE_BLOCKS)
    candidates: list[tuple[str, list[tuple[Block, str]], int]] = []
    if within_source:
        narrow = {b: block_pairs(con, b, narrow=True)[1] for b in CORE_BLOCKS}
        chosen += [(b, NARROW) for b in CORE_BLOCKS]
        total += sum(narrow.values())
        candidates.append(("the core blocks within an agency", [(b, WITHIN) for b in CORE_BLOCKS],
                           sum(counts[b][1] - narrow[b] for b in CORE_BLOCKS)))
    for b in EXTRA_BLOCKS:
        candidates.append((f"{b.name} ({ACROSS})", [(b, ACROSS)], counts[b][0]))
        if within_source:
            candidates.append((f"{b.name} ({WITHIN})", [(b, WITHIN)], counts[b][1]))
    left_out = []
    for label, blocks, pairs in candidates:
        if pairs == 0:  # meets no pair here: nothing to add
            continue
        if total + pairs <= budget:
            if blocks[0][1] == WITHIN and blocks[0][0] in CORE_BLOCKS:
                chosen = [(b, s) for b, s in chosen if s != NARROW]
            chosen += blocks
            total += pairs
        else:
            left_out.append((label, pairs))
    run_sql(con, "blocking: drop block_keys", "DROP TABLE block_keys")
    log.info("blocking: %d of %d candidate blocks within the budget of %s pairs a record (%d pairs counted, "
             "budget %d); left out: %s", len(candidates) - len(left_out), len(candidates), f"{budget_per_record:g}",
             total, budget, ", ".join(f"{n} ({p:,})" for n, p in left_out) or "none")
    return Chosen(tuple(chosen), total, budget, tuple(left_out))


def default_blocks(within_source: bool = True) -> tuple[tuple[Block, str], ...]:
    """The blocks used whatever the budget: the core blocks across agencies, and within one narrowed."""
    return tuple((b, ACROSS) for b in CORE_BLOCKS) + (tuple((b, NARROW) for b in CORE_BLOCKS) if within_source else ())


def blocking_rules(blocks: tuple[tuple[Block, str], ...]) -> list[str]:
    """The join conditions of the chosen (block, scope) pairs, restricted to pairs that could change
    who is linked: different components, at least one without a PNC id. A block chosen both across
    agencies and within one is one rule."""
    scopes: dict[Block, set[str]] = {}
    for block, scope in blocks:
        scopes.setdefault(block, set()).add(scope)
    candidate = " AND (l.open OR r.open) AND l.comp <> r.comp"
    rules = []
    narrow = _SCOPES[NARROW].removeprefix(" AND ")
    for block, held in scopes.items():
        if ACROSS in held and WITHIN in held:
            scope = ""
        elif ACROSS in held and NARROW in held:
            scope = f" AND (l.source <> r.source OR ({narrow}))"
        else:
            scope = _SCOPES[next(s for s in (ACROSS, WITHIN, NARROW) if s in held)]
        rules += [rule + candidate + scope for rule in block.conditions()]
    return rules

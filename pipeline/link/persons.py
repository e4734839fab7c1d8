"""Stable person keys: a person keeps their key when a later link adds a record to them.

`person_key_registry` [one source record] holds the key each record was last given. At a link:
1. `key_votes` [one new person and one previous key]: how many of the person's records held it.
2. `key_winners` [one previous key]: the new person holding most of its records keeps it (ties:
   the smaller label); a person who wins several keys keeps the one with most records (ties:
   the smaller key) and the others are recorded as **merged** into it.
3. A person who keeps no key gets a new one: `P` and 12 hex digits of the sha256 of their
   smallest record id (what every key was before the registry), or the next 12 digits not yet
   issued where that would repeat a key already issued or another new person's. On a first link
   every key is new, so a warehouse linked before the registry keeps its keys.
4. Records of a previous key that went to another person are recorded as a **split** of it.
5. The registry takes the new keys; rows of records no longer loaded stay, so their key is
   never given to anyone else.

`person_key_events` [one merge or split] feeds the monthly movement ("records merged").
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import duckdb

from pipeline.warehouse import run_sql

log = logging.getLogger(__name__)

_VOTES = """
CREATE OR REPLACE TEMP TABLE key_votes AS  -- [one new person and one previous key]
SELECT l.final_label, g.person_key, count(*) AS n
FROM linked l JOIN person_key_registry g USING (record_id) GROUP BY ALL
"""

_WINNERS = """
CREATE OR REPLACE TEMP TABLE key_winners AS  -- [one previous key]: the person with most of its records
SELECT person_key, first(final_label ORDER BY n DESC, final_label) AS final_label FROM key_votes GROUP BY person_key
"""

_KEPT = """
CREATE OR REPLACE TEMP TABLE kept_keys AS  -- [one new person keeping a previous key]
SELECT w.final_label, first(w.person_key ORDER BY v.n DESC, w.person_key) AS person_key
FROM key_winners w JOIN key_votes v USING (person_key, final_label) GROUP BY w.final_label
"""

ANCHORS = """
CREATE OR REPLACE TEMP TABLE anchors AS  -- [one person]: a kept key, or a new one from their records
-- New keys are 12 hex digits (48 bits): at a million people two share them in about one link in
-- 560, and those people take the next 12 digits of their hashes instead. A key issued before (a
-- person who lost their key to another and then loses the next one too, over several relinks)
-- is never given again: such a person takes the first 12 digits of their hash not yet issued.
WITH hashed AS (
    SELECT final_label, upper(sha256(min(record_id))) AS digest FROM linked GROUP BY final_label),
issued AS (
    SELECT person_key FROM person_key_registry UNION SELECT person_key FROM person_key_events
    UNION SELECT other_key FROM person_key_events),
fresh AS (SELECT h.* FROM hashed h ANTI JOIN kept_keys k USING (final_label)),
shared AS (SELECT left(digest, 12) AS prefix FROM fresh GROUP BY prefix HAVING count(*) > 1),
usual AS (  -- nearly everyone: the first 12 digits
    SELECT final_label, 'P' || left(digest, 12) AS person_key FROM fresh
    WHERE left(digest, 12) NOT IN (SELECT prefix FROM shared) AND 'P' || left(digest, 12) NOT IN (SELECT person_key FROM issued)),
later AS (  -- the few others: each next 12 digits of the 64
    SELECT f.final_label, t.i, 'P' || substr(f.digest, 1 + 12 * t.i, 12) AS person_key
    FROM fresh f CROSS JOIN range(1, 5) t(i) WHERE f.final_label NOT IN (SELECT final_label FROM usual)),
later_shared AS (SELECT person_key FROM later GROUP BY person_key HAVING count(DISTINCT final_label) > 1),
keyed AS (
    SELECT final_label, person_key FROM kept_keys
    UNION ALL
    SELECT final_label, person_key FROM usual
    UNION ALL
    SELECT final_label, arg_min(person_key, i) FROM later
    WHERE person_key NOT IN (SELECT person_key FROM issued) AND person_key NOT IN (SELECT person_key FROM usual)
      AND person_key NOT IN (SELECT person_key FROM later_shared)
    GROUP BY final_label)
-- person_number: 0, 1, 2, ... in person-key order, so that the facts tables and the monthly
-- features join, group and sort on small integers instead of text
SELECT final_label, person_key, (row_number() OVER (ORDER BY person_key) - 1)::INTEGER AS person_number
FROM keyed
"""

_EVENTS = """
INSERT INTO person_key_events
SELECT $now, 'merged', k.person_key, w.person_key, v.n
FROM key_winners w JOIN kept_keys k ON k.final_label = w.final_label
JOIN key_votes v ON v.person_key = w.person_key AND v.final_label = w.final_label
WHERE w.person_key <> k.person_key
UNION ALL
SELECT $now, 'split', v.person_key, a.person_key, v.n
FROM key_votes v JOIN key_winners w USING (person_key) JOIN anchors a ON a.final_label = v.final_label
WHERE v.final_label <> w.final_label
"""

_REKEYED = """
CREATE OR REPLACE TEMP TABLE rekeyed AS  -- [one record whose key is new or changed]
SELECT l.record_id, a.person_key FROM linked l JOIN anchors a USING (final_label)
LEFT JOIN person_key_registry g ON g.record_id = l.record_id
WHERE g.person_key IS DISTINCT FROM a.person_key
"""
# One row per record: a rekeyed record's old row goes before its new one is written.
_UNREGISTER = "DELETE FROM person_key_registry WHERE record_id IN (SELECT record_id FROM rekeyed)"
_REGISTER = "INSERT INTO person_key_registry SELECT record_id, person_key, $now FROM rekeyed"

STEPS = {"key_votes": _VOTES, "key_winners": _WINNERS, "kept_keys": _KEPT, "anchors": ANCHORS,
         "person_key_events": _EVENTS, "rekeyed": _REKEYED, "unregister": _UNREGISTER, "person_key_registry": _REGISTER}


def assign_keys(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Steps 1 to 3 (the `anchors` table); returns the counts of merges and splits."""
    for step in ("key_votes", "key_winners", "kept_keys", "anchors"):
        run_sql(con, f"person keys: {step}", STEPS[step])
    merged, split = run_sql(con, "person keys: count changes", """
        SELECT (SELECT count(*) FROM key_winners w JOIN kept_keys k USING (final_label) WHERE w.person_key <> k.person_key),
               (SELECT count(*) FROM key_votes v JOIN key_winners w USING (person_key) WHERE v.final_label <> w.final_label)
    """).fetchone()
    return {"merged": int(merged), "split": int(split)}


def record_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Steps 4 and 5: the merges and splits, and the registry (in the link's transaction)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    run_sql(con, "person keys: events", _EVENTS, {"now": now})
    run_sql(con, "person keys: rekeyed", _REKEYED)
    run_sql(con, "person keys: unregister", _UNREGISTER)
    run_sql(con, "person keys: registry", _REGISTER, {"now": now})
    for temp in ("key_votes", "key_winners", "kept_keys", "rekeyed"):
        run_sql(con, f"person keys: drop {temp}", f"DROP TABLE IF EXISTS {temp}")


def merged_into(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Every key ever merged into another, mapped to the key that now holds its records
    (following chains: A into B, later B into C, gives A -> C)."""
    rows = run_sql(con, "person keys: merges",
                   "SELECT other_key, person_key FROM person_key_events WHERE event = 'merged' "
                   "ORDER BY event_at, other_key").fetchall()
    target = dict(rows)
    resolved = {}
    for old in target:
        seen, key = {old}, target[old]
        while key in target and key not in seen:
            seen.add(key)
            key = target[key]
        resolved[old] = key
    return resolved

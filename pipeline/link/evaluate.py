"""`iom links evaluate`: precision and recall of the links against a synthetic truth file.

The synthetic world (`iom generate`) writes `truth/identities.parquet` beside the extracts: one
row per agency record identity (`source` as the extract's name, `record_id` as the police id, CRN
or NOMIS number, `person_id` the true person). The pipeline never reads it for linking; this
module only scores the links made.

Scored pair by pair over the records both hold: a pair is true when the two records are one true
person, predicted when they share a person key. Precision = true predicted / predicted,
recall = true predicted / true. Missed pairs are split into those whose records hold two
different PNC ids (never merged, by rule) and the others; the review queue is scored too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from pipeline.config import Config
from pipeline.errors import NotFoundError
from pipeline.warehouse import connect, run_sql

TRUTH_FILE = Path("truth") / "identities.parquet"
_SOURCES = {"police_nominals": "police", "probation_cases": "probation", "prison_custody": "prison"}

_TRUTH = """
CREATE OR REPLACE TEMP TABLE truth_records AS  -- [one record in both the truth and the links]
SELECT p.person_key, t.person_id, p.link_method, p.pnc_norm, p.source || ':' || p.source_id AS record_id
FROM person_ids p JOIN (
    SELECT CASE source WHEN 'police_nominals' THEN 'police' WHEN 'probation_cases' THEN 'probation'
                       WHEN 'prison_custody' THEN 'prison' ELSE source END AS source,
           record_id AS source_id, person_id
    FROM read_parquet($truth)) t USING (source, source_id)
"""

_SCORE = """
WITH pred AS (SELECT coalesce(sum(n * (n - 1) // 2), 0) AS pairs FROM (
                  SELECT count(*) AS n FROM truth_records GROUP BY person_key)),
true_pairs AS (SELECT coalesce(sum(n * (n - 1) // 2), 0) AS pairs FROM (
                  SELECT count(*) AS n FROM truth_records GROUP BY person_id)),
hit AS (SELECT coalesce(sum(n * (n - 1) // 2), 0) AS pairs FROM (
                  SELECT count(*) AS n FROM truth_records GROUP BY person_key, person_id)),
-- [one true person, one linked person and one PNC id]: missed pairs across two PNC ids are never merged
pnc_groups AS (SELECT person_id, person_key, pnc_norm, count(*) AS n FROM truth_records
               WHERE pnc_norm IS NOT NULL GROUP BY ALL),
blocked AS (SELECT coalesce(sum(a.n * b.n), 0) AS pairs FROM pnc_groups a JOIN pnc_groups b
                ON a.person_id = b.person_id AND a.person_key < b.person_key AND a.pnc_norm <> b.pnc_norm)
SELECT (SELECT count(*) FROM truth_records), pred.pairs, true_pairs.pairs, hit.pairs, blocked.pairs
FROM pred, true_pairs, hit, blocked
"""

_PROBABILISTIC = """
SELECT count(*) FILTER (WHERE a.person_key = b.person_key),
       count(*) FILTER (WHERE a.person_key = b.person_key AND a.person_id = b.person_id),
       count(*) FILTER (WHERE p.zone = 'review' AND a.person_key <> b.person_key),
       count(*) FILTER (WHERE p.zone = 'review' AND a.person_key <> b.person_key AND a.person_id = b.person_id)
FROM link_pairs p JOIN truth_records a ON a.record_id = p.record_id_l JOIN truth_records b ON b.record_id = p.record_id_r
"""


@dataclass(frozen=True)
class Evaluation:
    truth_file: str
    records: int  # records in both the truth file and the links
    predicted_pairs: int
    true_pairs: int
    true_predicted: int
    missed_two_pnc_ids: int  # true pairs whose records hold two different PNC ids: never merged, by rule
    probabilistic_pairs_linked: int  # scored pairs whose records ended as one person
    probabilistic_pairs_correct: int
    queue_pairs: int
    queue_true_matches: int

    @property
    def precision(self) -> float:
        return self.true_predicted / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.true_predicted / self.true_pairs if self.true_pairs else 1.0

    @property
    def false_pairs(self) -> int:
        return self.predicted_pairs - self.true_predicted

    @property
    def missed_pairs(self) -> int:
        return self.true_pairs - self.true_predicted

    def to_dict(self) -> dict:
        return {**asdict(self), "precision": round(self.precision, 5), "recall": round(self.recall, 5)}


def truth_path(config: Config, truth: Path | None = None) -> Path | None:
    path = Path(truth) if truth else config.root / TRUTH_FILE
    return path if path.is_file() else None


def evaluate_links(con: duckdb.DuckDBPyConnection, path: Path) -> Evaluation:
    run_sql(con, "evaluate: truth_records", _TRUTH, {"truth": str(path)})
    records, predicted, true, hit, blocked = run_sql(con, "evaluate: pairs", _SCORE).fetchone()
    linked, correct, queued, queued_true = run_sql(con, "evaluate: probabilistic pairs", _PROBABILISTIC).fetchone()
    run_sql(con, "evaluate: drop truth_records", "DROP TABLE truth_records")
    return Evaluation(str(path), int(records), int(predicted), int(true), int(hit), int(blocked), int(linked or 0),
                      int(correct or 0), int(queued or 0), int(queued_true or 0))


def evaluate(config: Config, truth: Path | None = None) -> Evaluation:
    path = truth_path(config, truth)
    if path is None:
        raise NotFoundError(f"no truth file at {truth or config.root / TRUTH_FILE}",
                            hint="only a synthetic workspace (`iom generate`) has one; pass --truth PATH")
    con = connect(config, read_only=True)
    try:
        return evaluate_links(con, path)
    finally:
        con.close()

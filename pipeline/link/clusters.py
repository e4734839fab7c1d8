"""People from the deterministic components and the accepted probabilistic links.

Named steps:
1. `link_edges` [one accepted pair of records in two components]: pairs the model auto-linked
   (at or above the pair's upper threshold) that no reviewer rejected, and every pair a reviewer
   matched (whatever the model says); `link_cannot` [one pair a reviewer rejected].
2. clustering: the components joined by those edges (connected components, scipy). A cluster
   that would hold two different PNC ids, or two records a reviewer said are not the same person,
   is split: its edges are applied strongest first (reviewers' matches, then by match
   probability) and an edge that would join two PNC ids or a rejected pair is not applied; a
   component without a PNC id that the model links to two people of different PNC ids is
   ambiguous: none of those links is applied, and they wait in the review queue; so does a
   model's link across agencies that would give a person a second record of one agency.
   Each edge not applied is kept in `link_conflicts` with its reason.
3. `linked.final_label` takes the cluster's label (its smallest component label), and
   `joined_by` [one component joined to others by an applied edge] says how: `review` (a
   reviewer's match) or `probabilistic`.

Only the clusters in conflict go through the Python loop of step 2; they are few.
"""

from __future__ import annotations

import logging

import duckdb
import numpy as np
import pyarrow as pa

from pipeline.warehouse import run_sql

log = logging.getLogger(__name__)

# Decisions are kept as an audit trail; the latest per pair of records applies.
LATEST_DECISIONS = """
SELECT record_id_l, record_id_r, arg_max(decision, decision_id) AS decision,
       arg_max(decided_by, decision_id) AS decided_by, max(decided_at) AS decided_at
FROM link_decisions GROUP BY record_id_l, record_id_r
"""

_EDGES = f"""
CREATE OR REPLACE TEMP TABLE link_edges AS  -- [one accepted pair in two components]
WITH decided AS ({LATEST_DECISIONS}),
candidates AS (
    SELECT p.record_id_l, p.record_id_r, p.match_probability AS strength, 'probabilistic' AS kind
    FROM link_pairs p LEFT JOIN decided d USING (record_id_l, record_id_r)
    WHERE p.zone = 'auto_link' AND d.decision IS DISTINCT FROM 'no_match'
    UNION ALL
    SELECT record_id_l, record_id_r, 2.0 AS strength, 'review' AS kind FROM decided WHERE decision = 'match')
SELECT c.record_id_l, c.record_id_r, c.strength, c.kind, a.det_label AS label_l, b.det_label AS label_r
FROM candidates c JOIN linked a ON a.record_id = c.record_id_l JOIN linked b ON b.record_id = c.record_id_r
"""
# Separate statements: with `<>` in the join above, DuckDB may plan `linked` against itself first.
_EDGES_WITHIN = "DELETE FROM link_edges WHERE label_l = label_r"

_CANNOT = f"""
CREATE OR REPLACE TEMP TABLE link_cannot AS  -- [one pair a reviewer said are two people]
WITH decided AS ({LATEST_DECISIONS})
SELECT a.det_label AS label_l, b.det_label AS label_r
FROM decided d JOIN linked a ON a.record_id = d.record_id_l JOIN linked b ON b.record_id = d.record_id_r
WHERE d.decision = 'no_match'
"""
_CANNOT_WITHIN = "DELETE FROM link_cannot WHERE label_l = label_r"

_COMPONENT_PNC = """SELECT det_label, list(DISTINCT pnc_norm) FILTER (WHERE pnc_norm IS NOT NULL) AS pncs,
                           bit_or(CASE source WHEN 'police' THEN 1 WHEN 'probation' THEN 2 ELSE 4 END) AS agencies
                    FROM linked
                    WHERE det_label IN (SELECT label_l FROM link_edges UNION SELECT label_r FROM link_edges)
                    GROUP BY det_label"""

_CONFLICTS_DDL = """CREATE OR REPLACE TABLE link_conflicts (  -- [one accepted pair not applied]
    record_id_l VARCHAR, record_id_r VARCHAR, strength DOUBLE, kind VARCHAR, reason VARCHAR)"""

_AMBIGUOUS_TO_REVIEW = """UPDATE link_pairs SET zone = 'review' FROM link_conflicts c
    WHERE c.reason IN (?, ?) AND link_pairs.record_id_l = c.record_id_l AND link_pairs.record_id_r = c.record_id_r"""

_APPLY = """
CREATE OR REPLACE TEMP TABLE joined_by AS  -- [one component joined by an applied edge]
SELECT label, CASE WHEN bool_or(kind = 'review') THEN 'review' ELSE 'probabilistic' END AS joined_by
FROM (SELECT label_l AS label, kind FROM applied_edges UNION ALL SELECT label_r, kind FROM applied_edges) GROUP BY label
"""


def _find(parent: dict, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        parent[x], x = root, parent[x]
    return root


AMBIGUOUS = "matches people with two different PNC ids: for a reviewer"
SECOND_RECORD = "would give the person a second record of one agency: for a reviewer"
_SOURCE_BIT = {"police": 1, "probation": 2, "prison": 4}


def _ambiguous(edges: list[tuple], pncs: dict) -> set[int]:
    """The model's links of a component without a PNC id to components of two or more different
    PNC ids: it could be either person, so none of them is applied and a reviewer decides (a
    component a reviewer has matched is not ambiguous)."""
    reach: dict = {}
    reviewed = {x for _, _, a, b, kind, _ in edges if kind == "review" for x in (a, b)}
    for index, _, a, b, kind, _ in edges:
        if kind == "review":
            continue
        for x, y in ((a, b), (b, a)):
            if x not in pncs and y in pncs and x not in reviewed:
                reach.setdefault(x, {}).setdefault(pncs[y], []).append(index)
    return {i for by_pnc in reach.values() if len(by_pnc) > 1 for found in by_pnc.values() for i in found}


def _split(edges: list[tuple], pncs: dict, cannot: set, sources: dict | None = None) -> tuple[list[int], list[tuple[int, str]]]:
    """Greedy, strongest edge first: join two groups unless they hold different PNC ids or a
    rejected pair; ambiguous links (`_ambiguous`) are not applied, nor a model's link across
    agencies that would give a person a second record of an agency (each agency's own duplicate
    needs its own evidence: a pair within the agency, or a reviewer). Edges are (index, strength,
    label, label, kind, same agency); `sources` maps a label to its agencies (bits); returns the
    indices applied and (index, reason) of the others."""
    sources = sources or {}
    ambiguous = _ambiguous(edges, pncs)
    parent: dict = {}
    held: dict = {}
    agencies: dict = {}
    members: dict = {}
    applied, refused = [], []
    for index, _, a, b, kind, same_agency in sorted(edges, key=lambda e: (-e[1], e[0])):
        if index in ambiguous:
            refused.append((index, AMBIGUOUS))
            continue
        for x in (a, b):
            if x not in parent:
                parent[x], held[x], members[x] = x, set(pncs.get(x, ())), {x}
                agencies[x] = sources.get(x, 0)
        ra, rb = _find(parent, a), _find(parent, b)
        if ra == rb:
            applied.append(index)
            continue
        if held[ra] and held[rb] and held[ra] != held[rb]:
            refused.append((index, "would join two different PNC ids"))
            continue
        if any((x, y) in cannot or (y, x) in cannot for x in members[ra] for y in members[rb]):
            refused.append((index, "a reviewer decided these are not the same person"))
            continue
        if kind != "review" and not same_agency and agencies[ra] & agencies[rb]:
            refused.append((index, SECOND_RECORD))
            continue
        parent[rb] = ra
        held[ra] |= held[rb]
        agencies[ra] |= agencies[rb]
        members[ra] |= members.pop(rb)
        applied.append(index)
    return applied, refused


def cluster(con: duckdb.DuckDBPyConnection) -> dict:
    """Steps 1 to 3; `linked` must hold `det_label` and `final_label` (equal on entry)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    run_sql(con, "clusters: link_edges", _EDGES)
    run_sql(con, "clusters: link_edges within a component", _EDGES_WITHIN)
    run_sql(con, "clusters: link_cannot", _CANNOT)
    run_sql(con, "clusters: link_cannot within a component", _CANNOT_WITHIN)
    run_sql(con, "clusters: link_conflicts", _CONFLICTS_DDL)
    edges = run_sql(con, "clusters: read edges",
                    "SELECT record_id_l, record_id_r, strength, kind, label_l, label_r FROM link_edges "
                    "ORDER BY record_id_l, record_id_r, kind").fetchnumpy()
    n_edges = len(edges["label_l"])
    if n_edges == 0:
        run_sql(con, "clusters: no joins", "CREATE OR REPLACE TEMP TABLE joined_by (label UBIGINT, joined_by VARCHAR)")
        return {"applied": 0, "refused": 0, "review_matches": 0}
    labels_l, labels_r = edges["label_l"].astype(np.uint64), edges["label_r"].astype(np.uint64)
    nodes, inverse = np.unique(np.concatenate([labels_l, labels_r]), return_inverse=True)
    a, b = inverse[:n_edges], inverse[n_edges:]
    graph = coo_matrix((np.ones(n_edges, dtype=np.int8), (a, b)), shape=(len(nodes), len(nodes)))
    _, group = connected_components(graph.tocsr(), directed=False)

    pnc_rows = run_sql(con, "clusters: component PNC ids", _COMPONENT_PNC).fetchall()
    pncs = {label: tuple(sorted(values)) for label, values, _ in pnc_rows if values}
    sources = {label: int(bits) for label, _, bits in pnc_rows}
    cannot = {(int(x), int(y)) for x, y in run_sql(con, "clusters: read cannot", "SELECT * FROM link_cannot").fetchall()}
    # A group is in conflict if it holds two PNC ids or both records of a rejected pair.
    group_pncs: dict[int, set] = {}
    for node, g in zip(nodes.tolist(), group.tolist(), strict=True):
        if node in pncs:
            group_pncs.setdefault(g, set()).update(pncs[node])
    node_group = dict(zip(nodes.tolist(), group.tolist(), strict=True))
    conflicted = {g for g, held in group_pncs.items() if len(held) > 1}
    # a group holding two components with records of one agency may join them only by a pair within it
    seen_agency: dict[tuple[int, int], int] = {}
    for node, g in zip(nodes.tolist(), group.tolist(), strict=True):
        for bit in (1, 2, 4):
            if sources.get(node, 0) & bit:
                seen_agency[(g, bit)] = seen_agency.get((g, bit), 0) + 1
    conflicted |= {g for (g, _), n in seen_agency.items() if n > 1}
    conflicted |= {node_group[x] for x, y in cannot if x in node_group and node_group.get(y) == node_group[x]}

    edge_group = group[a]
    keep = np.ones(n_edges, dtype=bool)
    refused: list[tuple[int, str]] = []
    if conflicted:
        for g in sorted(conflicted):
            index = np.flatnonzero(edge_group == g)
            subset = [(int(i), float(edges["strength"][i]), int(labels_l[i]), int(labels_r[i]), str(edges["kind"][i]),
                       str(edges["record_id_l"][i]).split(":")[0] == str(edges["record_id_r"][i]).split(":")[0])
                      for i in index]
            _, refused_here = _split(subset, pncs, cannot, sources)
            refused.extend(refused_here)
        for i, _ in refused:
            keep[i] = False
        # the clusters again, from the edges applied
        graph = coo_matrix((np.ones(int(keep.sum()), dtype=np.int8), (a[keep], b[keep])), shape=(len(nodes), len(nodes)))
        _, group = connected_components(graph.tocsr(), directed=False)
    # Each cluster's label is its smallest component label: a property of its records.
    smallest = np.full(group.max() + 1, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(smallest, group, nodes)
    con.register("cluster_frame", pa.table({"det_label": nodes, "final_label": smallest[group]}))
    run_sql(con, "clusters: relabel",
            "UPDATE linked SET final_label = m.final_label FROM cluster_frame m WHERE linked.det_label = m.det_label")
    con.unregister("cluster_frame")
    con.register("applied_frame", pa.table({
        "label_l": labels_l[keep], "label_r": labels_r[keep], "kind": pa.array(edges["kind"][keep].tolist(), pa.string())}))
    run_sql(con, "clusters: applied_edges", "CREATE OR REPLACE TEMP TABLE applied_edges AS SELECT * FROM applied_frame")
    con.unregister("applied_frame")
    run_sql(con, "clusters: joined_by", _APPLY)
    if refused:
        rows = [(str(edges["record_id_l"][i]), str(edges["record_id_r"][i]), float(edges["strength"][i]),
                 str(edges["kind"][i]), reason) for i, reason in refused]
        con.register("refused_frame", pa.table(list(zip(*rows, strict=True)),
                                               names=["record_id_l", "record_id_r", "strength", "kind", "reason"]))
        run_sql(con, "clusters: store conflicts", "INSERT INTO link_conflicts SELECT * FROM refused_frame")
        con.unregister("refused_frame")
        # an ambiguous link waits for a reviewer like a pair between the thresholds
        run_sql(con, "clusters: ambiguous to review", _AMBIGUOUS_TO_REVIEW, [AMBIGUOUS, SECOND_RECORD])
        log.warning("%d accepted link(s) not applied: two PNC ids, an ambiguous match, a second record of one "
                    "agency or a reviewer's no (see link_conflicts)", len(refused))
    review_matches = int(np.sum((edges["kind"] == "review") & keep))
    return {"applied": int(keep.sum()), "refused": len(refused), "review_matches": review_matches}

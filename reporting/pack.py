"""`pack.html`: the offline panel pack, one self-contained file per run.

Rendered with Jinja2 (autoescape on: every value from the data is HTML-escaped), with its CSS,
script and SVG inline and a Content-Security-Policy that forbids loading anything, so it opens
from a file share on a PC with no network and cannot be made to call out even by hostile data.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from reporting.charts import area_bars, timeline_axis, timeline_paths
from reporting.tables import IDENTIFIERS, TIMELINE_YEARS, ReportData

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent / "templates"
IDENTIFIER_LABELS = {"police_person_id": "police id", "pnc_id": "PNC id", "crn": "CRN", "nomis_id": "NOMIS number"}
RECENT = 6  # the latest records listed under each timeline
AGENCIES = (("police", "in_police", "police_person_id"), ("probation", "in_probation", "crn"),
            ("prison", "in_prison", "nomis_id"))


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["num"] = lambda v: "" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))
    env.filters["pct"] = lambda v: "" if v is None else f"{v:.1%}"
    env.filters["humanise"] = lambda v: str(v).replace("_", " ")
    env.filters["chance"] = chance
    return env


def chance(probability: float | None) -> str:
    """A model probability for a panel: whole percentages, never a certain 0% or 100% (a
    calibrated model's top or bottom bin is an estimate, not a certainty)."""
    if probability is None:
        return ""
    if probability >= 0.995:
        return "over 99%"
    if probability < 0.005:
        return "under 1%"
    return f"{probability:.0%}"


def _name(row: dict) -> str:
    name = f"{row.get('forenames') or ''} {row.get('surname') or ''}".strip()
    return name or "(no name recorded)"


def _grouped(frame: pl.DataFrame, key: str = "person_key") -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in frame.iter_rows(named=True):
        out.setdefault(row[key], []).append(row)
    return out


_POINTS = re.compile(r": ([+-]\d+)$")


def components_with_reasons(components: list[tuple[str, int]], reasons: list[str]) -> list[tuple[str, int, list[str]]]:
    """Each scoring component with the reason lines that explain its points.

    The rule engine writes one line per scoring term, in component order, each ending in its
    points (": +10"); a component's lines add up to its points. Lines are handed out in that
    order; if they do not add up (a rule set written otherwise), every line is listed once under
    the first component rather than guessing."""
    out, i = [], 0
    for name, points in components:
        taken, total = [], 0
        while i < len(reasons) and total != points:
            match = _POINTS.search(reasons[i])
            if not match:
                break
            total += int(match.group(1))
            taken.append(reasons[i])
            i += 1
        if total != points:
            return [(components[0][0] if components else "score", sum(p for _, p in components), reasons)] + \
                [(n, p, []) for n, p in components[1:]]
        out.append((name, points, taken))
    if i < len(reasons) and out:
        out[-1][2].extend(reasons[i:])
    return out


def _cards(data: ReportData) -> list[dict]:
    as_of = data.run["as_of"]
    start = as_of - timedelta(days=round(365.25 * TIMELINE_YEARS))
    timelines = timeline_paths(data.events, start, as_of)
    moves = _grouped(data.movement.filter(pl.col("status") != "leaving")) if data.movement.height else {}
    history = _grouped(data.history)
    decisions = _grouped(data.decisions) if data.decisions.height else {}
    recent = _grouped(data.events.sort(["person_key", "start", "kind"], descending=[False, True, False]))
    cards = []
    for row in data.members.iter_rows(named=True):
        key = row["person_key"]
        cohorts = [c for c, flag in (("priority", "priority"), ("super-prolific", "super_prolific")) if row.get(flag)]
        ids = [(IDENTIFIER_LABELS[c], row.get(c)) for c in IDENTIFIERS if row.get(c)]
        name = _name(row)
        cards.append({
            "row": row,
            "key": key,
            "name": name,
            "cohorts": cohorts,
            "cohort_tokens": " ".join(c.replace("-", "_") for c in cohorts),
            "search": " ".join([name, key, *[v for _, v in ids]]).lower(),
            "ids": ids,
            "components": components_with_reasons(
                [(c, row.get(f"points_{c}") or 0) for c in data.components if row.get(f"points_{c}")],
                (row.get("reasons") or "").splitlines()),
            "recent": recent.get(key, [])[:RECENT],
            "probability": row.get(data.probability_column) if data.probability_column else None,
            "model_band": row.get("model_band"),
            "model_rank": row.get("model_rank"),
            "agencies": [(agency, bool(row.get(flag)), row.get(id_col)) for agency, flag, id_col in AGENCIES],
            "timeline": timelines.get(key),
            "moves": moves.get(key, []),
            "history": history.get(key, []),
            "decisions": decisions.get(key, []),
        })
    return cards


def _impact_context(summary: dict | None) -> dict | None:
    """The pack's impact section: the board summary, the headline figures and the chart."""
    if not summary:
        return None
    from evaluation.impact_chart import impact_svg

    def pct(figure: dict | None) -> str:
        if not figure or figure.get("estimate") is None:
            return "not estimable"
        low, high = figure.get("low"), figure.get("high")
        return f"{figure['estimate']:.1%}" + (f" (95% interval {low:.1%} to {high:.1%})" if low is not None else "")

    value = summary["value"]
    rows = [("reduction in offending near the capacity line (headline)", pct(summary["effect"])),
            ("reduction on the days managed (the headline over the difference in days managed)",
             pct(summary.get("effect_while_managed"))),
            ("difference-in-differences (check)", pct(summary["did_effect"])),
            ("naive before/after (overstated by regression to the mean)", pct(summary["naive_effect"])),
            ("reduction in neighbourhood crime, matched", pct(summary["neighbourhood_effect"])),
            ("management cost", f"£{value['management_cost']:,.0f}"),
            ("net value", "n/a" if value["net_value"] is None else f"£{value['net_value']:,.0f}"),
            ("break-even effect", "n/a" if value["break_even_effect"] is None else f"{value['break_even_effect']:.1%}")]
    return {"id": summary["impact_id"], "from": summary["from"], "to": summary["to"],
            "people": summary.get("managed_people", summary["treated_people"]),
            "near_line": summary["treated_people"], "summary": summary["board_summary"],
            "why": summary["why_naive_differs"], "rows": rows, "chart": Markup(impact_svg(summary)),
            "source": summary["cost_of_crime"]["source"], "caveat": summary["cost_of_crime"]["caveat"]}


DISAGREEMENT_KINDS = {
    "rules_high_model_low": "High on the rules, low on the model",
    "model_high_rules_low": "High on the model, low on the rules",
}


def _disagreement_context(data: ReportData) -> dict | None:
    """The pack's 'where the rules and the model disagree' section: each kind, largest gap first."""
    if data.model is None or data.disagreement is None:
        return None
    frame = data.disagreement
    eligible = data.model_eligible
    kinds = [{"title": title, "rows": list(frame.filter(pl.col("kind") == kind).iter_rows(named=True))}
             for kind, title in DISAGREEMENT_KINDS.items()]
    return {"kinds": kinds, "eligible": eligible,
            "top_percent": data.model.get("disagreement_top_percent"), "people": frame.height}


def render_pack(data: ReportData, pseudonymised: bool = False) -> str:
    stats = data.stats
    areas = [{"area": area, **values} for area, values in (stats.get("priority_by_area") or {}).items()]
    movement_counts: dict[str, int] = {}
    for cohort, status, n in data.movement.group_by("cohort", "status").len().sort("cohort", "status").iter_rows():
        movement_counts[f"{cohort.replace('_', '-')} {status}"] = n
    as_of = data.run["as_of"]
    start = as_of - timedelta(days=round(365.25 * TIMELINE_YEARS))
    env = _environment()
    context = {
        "run": data.run,
        "manifest": data.manifest,
        "stats": stats,
        "areas": areas,
        "area_chart": Markup(area_bars(areas)),
        "timeline_axis": Markup(timeline_axis(start, as_of)),
        "cards": _cards(data),
        "components": data.components,
        "probability_column": data.probability_column,
        "area_options": sorted({a["area"] for a in areas} | set(data.members.get_column("area").drop_nulls().to_list())),
        "type_options": sorted(set(data.members.get_column("cohort_type").drop_nulls().to_list())),
        "movement": data.movement.iter_rows(named=True),
        "movement_counts": movement_counts,
        "release_watch": data.release_watch.iter_rows(named=True),
        "release_watch_n": data.release_watch.height,
        "due": data.due_for_review.iter_rows(named=True) if data.due_for_review.height else [],
        "due_n": data.due_for_review.height,
        "decision_counts": data.manifest.get("counts", {}).get("decisions") or {},
        "rejects": data.rejects.iter_rows(named=True),
        "rejects_n": data.rejects.height,
        "unknown_codes": data.unknown_codes.iter_rows(named=True),
        "unknown_n": data.unknown_codes.height,
        "link": data.link,
        "fairness": None if data.fairness is None else {
            "columns": data.fairness.columns, "rows": data.fairness.rows()},
        "validity": None if data.validity is None else {
            "columns": data.validity.columns, "rows": data.validity.rows(), "source": data.validity_source},
        "impact": _impact_context(data.impact),
        "model": data.model,
        "disagreement": _disagreement_context(data),
        "pseudonymised": pseudonymised,
        "name_of": _name,
        "css": Markup((TEMPLATES / "pack.css").read_text(encoding="utf-8")),
        "script": Markup((TEMPLATES / "pack.js").read_text(encoding="utf-8")),
    }
    return env.get_template("pack.html.j2").render(**context)


def write_pack(data: ReportData, path: Path, pseudonymised: bool = False) -> Path:
    path.write_text(render_pack(data, pseudonymised), encoding="utf-8")
    return path

"""Charts as plain inline SVG: no plotting library, nothing fetched, text escaped.

The per-person timeline is built set-based: the x position of every event is computed in Polars
and each person's marks become one path per kind (offences as ticks, custody and supervision as
bars), so 2,000 cards cost a handful of vectorised passes, not a loop over events.
"""

from __future__ import annotations

from datetime import date
from html import escape

import polars as pl

WIDTH = 560  # drawing width of the timeline, in SVG units
LEFT = 92  # room for the row labels
HEIGHT = 70
ROWS = {"offence": (6, 14), "custody": (26, 10), "supervision": (42, 10)}  # kind -> (y, height)
COLOURS = {"offence": "#b3261e", "custody": "#1d4e89", "supervision": "#2e7d32"}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def timeline_axis(start: date, end: date) -> str:
    """The shared axis (row labels, one line per year): a <symbol> the cards <use>."""
    span = (end - start).days or 1
    parts = [f'<symbol id="tl-axis" viewBox="0 0 {LEFT + WIDTH + 8} {HEIGHT}">']
    for kind, (y, h) in ROWS.items():
        label = {"offence": "offences", "custody": "custody", "supervision": "supervision"}[kind]
        parts.append(f'<text x="0" y="{y + h - 2}" font-size="11" fill="#222">{label}</text>')
    for year in range(start.year + 1, end.year + 1):
        x = LEFT + WIDTH * (date(year, 1, 1) - start).days / span
        parts.append(f'<line x1="{x:.1f}" y1="2" x2="{x:.1f}" y2="56" stroke="#767676" stroke-width="0.5"/>'
                     f'<text x="{x:.1f}" y="67" font-size="10" text-anchor="middle" fill="#222">{year}</text>')
    parts.append("</symbol>")
    return "".join(parts)


def timeline_paths(events: pl.DataFrame, start: date, end: date) -> dict[str, dict]:
    """person_key -> {"offence": path d, "custody": d, "supervision": d, "summary": text}."""
    if events.is_empty():
        return {}
    span = float((end - start).days or 1)
    x = lambda column: (LEFT + WIDTH * (pl.col(column) - pl.lit(start)).dt.total_days().clip(0, span) / span)  # noqa: E731
    marks = events.with_columns(x("start").alias("x0"), x("end").fill_null(x("start")).alias("x1"))
    y = pl.col("kind").replace_strict({k: v[0] for k, v in ROWS.items()}, return_dtype=pl.Int64)
    h = pl.col("kind").replace_strict({k: v[1] for k, v in ROWS.items()}, return_dtype=pl.Int64)
    width = (pl.col("x1") - pl.col("x0")).clip(1.5, None)
    d = (
        pl.when(pl.col("kind") == "offence")
        .then(pl.format("M{} {}v{}", pl.col("x0").round(1), y, h))
        .otherwise(pl.format("M{} {}h{}v{}h-{}z", pl.col("x0").round(1), y, width.round(1), h, width.round(1)))
    )
    paths = (
        marks.with_columns(d.alias("d"))
        .group_by("person_key", "kind")
        .agg(pl.col("d").str.join(""), pl.len().alias("n"))
    )
    out: dict[str, dict] = {}
    for key, kind, path, n in paths.iter_rows():
        entry = out.setdefault(key, {"offence": "", "custody": "", "supervision": "", "counts": {}})
        entry[kind] = path
        entry["counts"][kind] = n
    for entry in out.values():
        c = entry["counts"]
        entry["summary"] = (f"{_count(c.get('offence', 0), 'offence')}, {_count(c.get('custody', 0), 'custody spell')} "
                            f"and {_count(c.get('supervision', 0), 'supervision period')} from {start.year} to {end:%Y-%m}")
    return out


def area_bars(rows: list[dict]) -> str:
    """Proposed against capacity per area: a horizontal bar chart with its numbers written out."""
    if not rows:
        return ""
    top = max(max(r["capacity"], r["selected"]) for r in rows) or 1
    bar_w, label_w, row_h = 300, 120, 24
    height = row_h * len(rows) + 8
    desc = "; ".join(f"{r['area']}: {r['selected']} proposed of capacity {r['capacity']}" for r in rows)
    parts = [f'<svg role="img" aria-label="{escape(desc)}" viewBox="0 0 {label_w + bar_w + 120} {height}" '
             f'width="{label_w + bar_w + 120}" height="{height}" class="chart">']
    for i, r in enumerate(rows):
        y = 4 + i * row_h
        cap = bar_w * r["capacity"] / top
        sel = bar_w * r["selected"] / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" font-size="12" text-anchor="end" fill="#222">{escape(str(r["area"]))}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{cap:.1f}" height="16" fill="#e6e6e6" stroke="#595959"/>'
            f'<rect x="{label_w}" y="{y + 3}" width="{sel:.1f}" height="16" fill="#1d4e89"/>'
            f'<text x="{label_w + max(cap, sel) + 6:.1f}" y="{y + 15}" font-size="12" fill="#222">'
            f'{r["selected"]} / {r["capacity"]}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)

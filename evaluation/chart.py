"""The back-test chart as a hand-written SVG: no network, no browser, byte-stable.

Left: capture curves (share of next-window offences committed by the top x% of people by each
score, averaged over the as-of dates), with the diagonal a random ranking would give. Right:
the reoffending rate by rule-score band, one bar per rule set. The pooled AUC of each curve's
score is in its legend.
"""

from __future__ import annotations

from html import escape

import polars as pl

from evaluation.metrics import SCORE_BANDS

WIDTH, HEIGHT = 980, 440
PANEL_W, PANEL_H = 380, 300
LEFT_X, RIGHT_X, TOP_Y = 70, 560, 60
COLOURS = ("#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#6c4f8a", "#00798c", "#8c564b", "#555555")


def _text(x: float, y: float, body: str, size: int = 12, anchor: str = "start", weight: str = "normal",
          rotate: bool = False) -> str:
    transform = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}"'
            f'{transform}>{escape(body)}</text>')


def _axes(x0: float, title: str, x_label: str, y_label: str) -> list[str]:
    parts = [f'<rect x="{x0}" y="{TOP_Y}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#999"/>',
             _text(x0, TOP_Y - 14, title, 14, weight="bold"),
             _text(x0 + PANEL_W / 2, TOP_Y + PANEL_H + 36, x_label, anchor="middle"),
             _text(x0 - 44, TOP_Y + PANEL_H / 2, y_label, anchor="middle", rotate=True)]
    for i in range(0, 11, 2):
        y = TOP_Y + PANEL_H - PANEL_H * i / 10
        parts.append(f'<line x1="{x0 - 4}" y1="{y:.1f}" x2="{x0}" y2="{y:.1f}" stroke="#999"/>')
        parts.append(_text(x0 - 7, y + 4, f"{i * 10}%", 10, anchor="end"))
    return parts


def backtest_svg(curves: pl.DataFrame, bands: pl.DataFrame, metrics: pl.DataFrame) -> str:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>']
    parts += _axes(LEFT_X, "Capture of next-window offences", "share of eligible people taken, by score",
                   "share of their offences")
    for i in range(0, 11, 2):
        x = LEFT_X + PANEL_W * i / 10
        parts.append(_text(x, TOP_Y + PANEL_H + 16, f"{i * 10}%", 10, anchor="middle"))
    parts.append(f'<line x1="{LEFT_X}" y1="{TOP_Y + PANEL_H}" x2="{LEFT_X + PANEL_W}" y2="{TOP_Y}" '
                 'stroke="#bbb" stroke-dasharray="4 4"/>')
    pooled = metrics.filter(pl.col("as_of").is_null())
    series = curves.select("rule_set", "scorer").unique(maintain_order=True).rows()
    for k, (rule_set, scorer) in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        points = curves.filter((pl.col("rule_set") == rule_set) & (pl.col("scorer") == scorer)).sort("share_of_people")
        path = " ".join(
            f"{LEFT_X + PANEL_W * s:.1f},{TOP_Y + PANEL_H - PANEL_H * (c or 0):.1f}"
            for s, c in points.select("share_of_people", "capture").rows())
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        auc = pooled.filter((pl.col("rule_set") == rule_set) & (pl.col("scorer") == scorer)).get_column("auc")
        label = f"{rule_set}: {scorer}" + (f" (AUC {auc[0]:.2f})" if auc.len() and auc[0] is not None else "")
        y = TOP_Y + PANEL_H - 12 - 16 * (len(series) - 1 - k)
        parts.append(f'<line x1="{LEFT_X + 150}" y1="{y - 4}" x2="{LEFT_X + 166}" y2="{y - 4}" stroke="{colour}" '
                     'stroke-width="3"/>')
        parts.append(_text(LEFT_X + 170, y, label, 10))
    parts += _axes(RIGHT_X, "Reoffending rate by rule score band", "rule score band (points)",
                   "offended in the window")
    labels = [label for _, label in SCORE_BANDS]
    rule_sets = bands.get_column("rule_set").unique(maintain_order=True).to_list()
    slot = PANEL_W / len(labels)
    bar = (slot - 6) / max(1, len(rule_sets))
    for j, label in enumerate(labels):
        parts.append(_text(RIGHT_X + slot * (j + 0.5), TOP_Y + PANEL_H + 16, label, 10, anchor="middle"))
    for r, rule_set in enumerate(rule_sets):
        colour = COLOURS[r % len(COLOURS)]
        rows = {b: (rate, n) for b, rate, n in
                bands.filter(pl.col("rule_set") == rule_set).select("band", "rate", "people").rows()}
        for j, label in enumerate(labels):
            if label not in rows:
                continue
            rate, people = rows[label]
            h = PANEL_H * (rate or 0)
            x = RIGHT_X + slot * j + 3 + bar * r
            parts.append(f'<rect x="{x:.1f}" y="{TOP_Y + PANEL_H - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{escape(rule_set)} {label}: {rate:.1%} of {people:,}</title></rect>')
        parts.append(f'<rect x="{RIGHT_X + 10}" y="{TOP_Y + 8 + 16 * r}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(RIGHT_X + 24, TOP_Y + 17 + 16 * r, rule_set, 10))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"

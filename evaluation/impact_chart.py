"""The impact chart as a hand-written SVG (no network, byte-stable), written beside impact.json.

Left: offences per person-year at risk in the 12 months before and after selection, the managed
people against their matched comparison. Right: the break-even line, net value against the effect
size (the cost of crime avoided grows in proportion to the effect; the management cost does
not), with the estimated effect and its interval marked.
"""

from __future__ import annotations

from evaluation.chart import COLOURS, _text

WIDTH, HEIGHT = 980, 440
PANEL_W, PANEL_H, TOP_Y = 380, 300, 60
LEFT_X, RIGHT_X = 70, 560


def _rates_panel(figures: dict) -> list[str]:
    bars = [("managed, before", figures.get("offences_treated_before")),
            ("managed, after", figures.get("offences_treated_after")),
            ("comparison, before", figures.get("offences_comparison_before")),
            ("comparison, after", figures.get("offences_comparison_after"))]
    top = max([v for _, v in bars if v] or [1.0]) * 1.15
    parts = [f'<rect x="{LEFT_X}" y="{TOP_Y}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#999"/>',
             _text(LEFT_X, TOP_Y - 14, "Offences per person-year at risk", 14, weight="bold")]
    width = PANEL_W / len(bars)
    for i, (label, rate) in enumerate(bars):
        x = LEFT_X + i * width + width * 0.15
        h = 0 if rate is None else PANEL_H * rate / top
        colour = COLOURS[0] if i < 2 else COLOURS[1]
        opacity = "0.5" if "before" in label else "1"
        parts.append(f'<rect x="{x:.1f}" y="{TOP_Y + PANEL_H - h:.1f}" width="{width * 0.7:.1f}" height="{h:.1f}" '
                     f'fill="{colour}" fill-opacity="{opacity}"/>')
        parts.append(_text(x + width * 0.35, TOP_Y + PANEL_H - h - 5, "n/a" if rate is None else f"{rate:.2f}", 11,
                           anchor="middle"))
        parts.append(_text(x + width * 0.35, TOP_Y + PANEL_H + 16, label, 10, anchor="middle"))
    return parts


def _break_even_panel(value: dict, effect: dict) -> list[str]:
    cost, counterfactual = value["management_cost"], value["counterfactual_cost"]
    parts = [f'<rect x="{RIGHT_X}" y="{TOP_Y}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#999"/>',
             _text(RIGHT_X, TOP_Y - 14, "Net value against the effect size", 14, weight="bold"),
             _text(RIGHT_X + PANEL_W / 2, TOP_Y + PANEL_H + 36, "share of offending prevented (0 to 100%)",
                   anchor="middle")]
    low, high = -cost, counterfactual - cost  # net value at no effect and at a 100% effect
    span = (high - low) or 1.0

    def y(net: float) -> float:
        return TOP_Y + PANEL_H - PANEL_H * (net - low) / span

    def x(e: float) -> float:
        return RIGHT_X + PANEL_W * min(max(e, 0.0), 1.0)

    zero = y(0.0)
    if TOP_Y <= zero <= TOP_Y + PANEL_H:
        parts.append(f'<line x1="{RIGHT_X}" y1="{zero:.1f}" x2="{RIGHT_X + PANEL_W}" y2="{zero:.1f}" stroke="#999" '
                     'stroke-dasharray="4 3"/>')
        parts.append(_text(RIGHT_X + 4, zero - 4, "break-even (net value 0)", 10))
    parts.append(f'<line x1="{x(0):.1f}" y1="{y(low):.1f}" x2="{x(1):.1f}" y2="{y(high):.1f}" stroke="{COLOURS[2]}" '
                 'stroke-width="2"/>')
    if effect.get("low") is not None and effect.get("high") is not None:
        parts.append(f'<rect x="{x(effect["low"]):.1f}" y="{TOP_Y}" width="{x(effect["high"]) - x(effect["low"]):.1f}" '
                     f'height="{PANEL_H}" fill="{COLOURS[0]}" fill-opacity="0.15"/>')
    if effect.get("estimate") is not None:
        parts.append(f'<line x1="{x(effect["estimate"]):.1f}" y1="{TOP_Y}" x2="{x(effect["estimate"]):.1f}" '
                     f'y2="{TOP_Y + PANEL_H}" stroke="{COLOURS[0]}" stroke-width="2"/>')
        parts.append(_text(x(effect["estimate"]) + 4, TOP_Y + 14, f"estimated effect {effect['estimate']:.0%}", 11))
    be = value.get("break_even_effect")
    parts.append(_text(RIGHT_X + PANEL_W - 4, TOP_Y + PANEL_H - 8,
                       "break-even effect " + ("n/a" if be is None else f"{be:.0%}"), 11, anchor="end"))
    return parts


def impact_svg(summary: dict) -> str:
    matched = summary["breakdown"]["all"]["matched"]
    body = _rates_panel(matched) + _break_even_panel(summary["value"], summary["effect"])
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">\n' + "\n".join(body) + "\n</svg>\n")

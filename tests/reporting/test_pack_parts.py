"""Small parts of the pack: reasons handed to their components, the timeline paths, the area chart."""

from __future__ import annotations

from datetime import date

import polars as pl

from reporting.charts import area_bars, timeline_paths
from reporting.pack import components_with_reasons

REASONS = ["last offence 5 days ago: +15", "13 offences in the last 12 months: +34",
           "9 offences in the last 3 months: +10", "under probation supervision: +4"]


def test_each_component_gets_the_reason_lines_that_add_up_to_its_points():
    got = components_with_reasons([("recency", 15), ("frequency", 44), ("supervision", 4)], REASONS)
    assert got == [("recency", 15, REASONS[:1]), ("frequency", 44, REASONS[1:3]), ("supervision", 4, REASONS[3:])]


def test_lines_that_do_not_add_up_are_all_kept_under_the_first_component():
    got = components_with_reasons([("recency", 15), ("frequency", 40)], REASONS[:3])
    assert [line for _, _, lines in got for line in lines] == REASONS[:3]
    assert [name for name, _, _ in got] == ["recency", "frequency"]


def test_timeline_marks_stay_inside_the_drawing_and_count_each_record():
    events = pl.DataFrame({
        "person_key": ["A", "A", "A", "B"],
        "kind": ["offence", "offence", "custody", "supervision"],
        "start": [date(2019, 1, 1), date(2026, 10, 1), date(2025, 1, 1), date(2026, 1, 1)],
        "end": [None, None, date(2025, 6, 1), date(2026, 11, 1)],
        "label": ["a", "b", "c", "d"], "ongoing": [False, False, False, True],
    })
    paths = timeline_paths(events, date(2021, 11, 1), date(2026, 11, 1))
    assert paths["A"]["counts"] == {"offence": 2, "custody": 1}
    assert paths["A"]["summary"].startswith("2 offences, 1 custody spell and 0 supervision periods")
    xs = [float(part.split()[0]) for part in paths["A"]["offence"].split("M")[1:]]
    assert min(xs) >= 92 and max(xs) <= 92 + 560  # a record before the window sits on its left edge
    assert paths["B"]["supervision"].startswith("M")


def test_area_chart_writes_its_figures_and_escapes_area_names():
    svg = area_bars([{"area": "<North>", "selected": 3, "capacity": 40}])
    assert "&lt;North&gt;" in svg and "<North>" not in svg and "3 / 40" in svg

"""The impact analysis: person-years at risk on a hand-made case, the cost table's uprating, the
break-even arithmetic, small-cell suppression and bad config (`iom impact`, docs/impact.md)."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from builders import build_warehouse, nominal, offence, person_key, pnc, spell, write_workspace
from typer.testing import CliRunner

from cli import app
from evaluation import impact
from evaluation.costs import unit_costs, uprate
from evaluation.impact_run import _suppressed
from evaluation.value import break_even, cost_per_managed_year, value
from pipeline.config import ImpactConfig, StaffCost, load_config
from pipeline.errors import ConfigError

runner = CliRunner()
MEETING = date(2025, 3, 1)


def _decide(con, key: str, decision: str, meeting: date, end: date | None = None,
            review: date = date(2025, 6, 1)) -> None:
    con.execute("""INSERT INTO decisions VALUES ('X', 1, ?, 'person_key', ?, ?, NULL, NULL, ?, ?, ?, NULL, '{}')""",
                [key, decision, "Fixed" if decision == "accept" else None, meeting, review, end])


@pytest.fixture
def hand_made(tmp_path):
    """A managed person and a person like them who was not selected, in the same area.

    Managed: offences 40 and 10 days before the meeting, one 100 days after, one 200 days after
    committed but recorded 400 days after (past the window's end: not counted); 73 days in
    custody after the meeting (days 20-93) and 30 before it (the 30 days up to 60 days before).
    Not selected: two offences before, none after, never inside."""
    day = MEETING.toordinal()
    at = date.fromordinal
    treated_pnc = pnc(10, 1234)
    con = build_warehouse(
        tmp_path,
        nominals=[nominal("P1", pnc_id=treated_pnc), nominal("P2")],
        offences=[offence("O1", "P1", at(day - 40)), offence("O2", "P1", at(day - 10)),
                  offence("O3", "P1", at(day + 100)),
                  offence("O4", "P1", at(day + 200), recorded_date=at(day + 400), outcome_date=at(day + 400)),
                  offence("O5", "P2", at(day - 100)), offence("O6", "P2", at(day - 5))],
        custody=[spell("S1", "A1234BC", at(day - 90), pnc_id=treated_pnc, release_date=at(day - 60)),
                 spell("S2", "A1234BC", at(day + 20), pnc_id=treated_pnc, release_date=at(day + 93))],
    )
    treated_key = person_key(con, "police", "P1")
    _decide(con, treated_key, "accept", MEETING, date(2025, 12, 1))
    _decide(con, person_key(con, "police", "P2"), "reject", MEETING)
    yield con
    con.close()


def test_person_years_at_risk_leave_out_custody_and_offences_recorded_after_the_window(hand_made):
    con = hand_made
    treated = impact.treated_people(con, date(2025, 1, 1), date(2025, 12, 31))
    assert treated["meeting_date"].to_list() == [MEETING]
    codes = con.execute("SELECT code_number, false AS neighbourhood_crime, 100.0 AS unit_cost FROM offence_codes").pl()
    frame = impact.windows(con, treated, codes).sort("treated", descending=True)
    managed, other = frame.row(0, named=True), frame.row(1, named=True)
    assert managed["treated"] and not other["treated"]
    assert (managed["pre_offences"], managed["post_offences"]) == (2, 1)
    assert (managed["pre_days"], managed["post_days"]) == (365 - 30, 365 - 73)
    assert managed["post_cost"] == 100.0
    assert (other["pre_offences"], other["post_offences"], other["pre_days"], other["post_days"]) == (2, 0, 365, 365)
    assert impact.person_years([365.25, 292])[0] == 1.0
    # in the same stratum (meeting, area, two offences before): the managed person's rate after is
    # 1 / (292 / 365.25) a year against 0 for the comparison, so no reduction can be claimed
    est = impact.estimate(impact.analysis_frames(frame, 30, 1)[0], ["meeting_date", "area", "pre_stratum"], 20, 1)
    assert est["offences_treated_after"] == pytest.approx(365.25 / 292, rel=1e-5)
    assert est["offences_comparison_after"] == 0


def test_the_comparison_is_candidates_the_panel_could_have_taken_near_its_line(tmp_path):
    """At the meeting, P1 is accepted with three offences in the year before (the area's line).
    Candidates like them: P2 (three, no decision). Not candidates: P3 (turned down a month before,
    review due after the meeting), P4 (managed in 2023). P5 (six offences) is three above the line,
    outside a bandwidth of two; P6 (one offence) is below both the line and the DiD's minimum."""
    day = MEETING.toordinal()
    at = date.fromordinal
    counts = {"P1": 3, "P2": 3, "P3": 3, "P4": 3, "P5": 6, "P6": 1}
    offences = [offence(f"O{p}{i}", p, at(day - 20 - 30 * i)) for p, n in counts.items() for i in range(n)]
    con = build_warehouse(tmp_path, nominals=[nominal(p) for p in counts], offences=offences)
    try:
        key = {p: person_key(con, "police", p) for p in counts}
        _decide(con, key["P1"], "accept", MEETING, date(2025, 12, 1))
        _decide(con, key["P3"], "reject", date(2025, 2, 1), review=date(2025, 5, 1))
        _decide(con, key["P4"], "accept", date(2023, 1, 1), date(2023, 6, 1))
        treated = impact.treated_people(con, date(2025, 1, 1), date(2025, 12, 31))
        assert treated["meeting_date"].to_list() == [MEETING]  # P4's first accept is before the period
        codes = con.execute("SELECT code_number, false AS neighbourhood_crime, 1.0 AS unit_cost FROM offence_codes").pl()
        frame = impact.windows(con, treated, codes, did_min=3)
        number = {p: con.execute("SELECT person_number FROM people WHERE person_key = ?", [k]).fetchone()[0]
                  for p, k in key.items()}
        names = {v: p for p, v in number.items()}
        rows = {names[r["person_number"]]: r for r in frame.iter_rows(named=True)}
        assert set(rows) == {"P1", "P2", "P5"}
        assert {r["line"] for r in rows.values()} == {3}
        headline, did = impact.analysis_frames(frame, 30, 3, bandwidth=2)
        assert sorted(names[n] for n in headline["person_number"]) == ["P1", "P2"]
        assert sorted(names[n] for n in did["person_number"]) == ["P1", "P2", "P5"]
    finally:
        con.close()


def test_uprating_multiplies_by_the_ratio_of_the_deflator_indices():
    # £14,050 at 2015/16 prices, deflator 100.0 then and 125.0 in the target year: £17,562.50
    assert uprate(14050, 100.0, 125.0) == pytest.approx(17562.5)
    assert uprate(14050, None, None) == 14050
    table = unit_costs(ImpactConfig(deflator_base=80.0, deflator_target=100.0, unit_costs={"shoplifting": 50.0}))
    robbery = table.filter(pl.col("offence_group") == "robbery").row(0, named=True)
    assert robbery["unit_cost"] == pytest.approx(11320 * 1.25) and robbery["status"] == "reported"
    shoplifting = table.filter(pl.col("offence_group") == "shoplifting").row(0, named=True)
    assert shoplifting["unit_cost"] == 50.0 and shoplifting["status"] == "config"


def test_every_group_without_a_home_office_figure_is_flagged_as_a_proxy():
    table = unit_costs(ImpactConfig())
    reported = set(table.filter(pl.col("status") == "reported")["offence_group"])
    assert reported == {"homicide", "sexual", "sexual_child", "serious_violence", "violence_with_injury", "robbery",
                        "criminal_damage"}
    assert table.filter(pl.col("status") == "proxy")["note"].str.contains("proxy").all()


def test_break_even_arithmetic():
    # two officers at £50,000 and £10,000 fixed, shared over a caseload of 20: £5,500 a person-year,
    # plus £100 a month of interventions: £6,700; ten managed person-years cost £67,000
    settings = ImpactConfig(staff=[StaffCost(role="police", fte=2, annual_cost=50_000)], fixed_annual=10_000,
                            intervention_per_person_month=100)
    assert cost_per_managed_year(settings, 20) == pytest.approx(6700)
    assert break_even(67_000, 335_000) == pytest.approx(0.2)
    result = value(settings, 10, 20, {"estimate": 100_000.0, "low": 10_000.0, "high": 150_000.0}, 335_000,
                   {"estimate": 0.3, "low": 0.03, "high": 0.45})
    assert result["management_cost"] == pytest.approx(67_000)
    assert result["net_value"] == pytest.approx(33_000)
    assert result["break_even_effect"] == pytest.approx(0.2)
    rows = {(r["input"], r["change"]): r for r in result["sensitivity"]}
    # staff costs +25%: £25,000 x 0.25 more (£100,000 / 20 x 10 = £50,000 of staff in the cost)
    assert rows[("staff costs", "+25%")]["net_value"] == pytest.approx(33_000 - 12_500)
    assert rows[("unit costs of crime", "-25%")]["net_value"] == pytest.approx(75_000 - 67_000)


def test_small_cells_are_suppressed():
    assert _suppressed({"treated_people": 9, "comparison_people": 40, "offences_effect": {}}, 10) == {
        "treated_people": None, "comparison_people": None, "suppressed": True,
        "note": "fewer than 10 people: suppressed"}
    assert _suppressed({"treated_people": 10, "comparison_people": 40}, 10)["suppressed"] is False


@pytest.mark.parametrize(("section", "message"), [
    ("[impact]\nfixed_annual = -5\n", "impact.fixed_annual"),
    ("[impact.unit_costs]\nrobbery = -1\n", "cannot be negative"),
    ("[[impact.staff]]\nrole = 'probation'\nfte = 1\nannual_cost = -40000\n", "impact.staff.0.annual_cost"),
])
def test_negative_costs_are_refused_naming_the_key(tmp_path, section, message):
    config = write_workspace(tmp_path)
    config.path.write_text(config.path.read_text() + section)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(config.path)


def test_an_unknown_offence_group_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="unknown offence group.*burglery"):
        unit_costs(ImpactConfig(unit_costs={"burglery": 10.0}), {"domestic_burglary"})


def test_iom_impact_without_decisions_says_what_to_do(tmp_path):
    config = write_workspace(tmp_path)
    result = runner.invoke(app, ["impact", "--config", str(config.path)])
    assert result.exit_code != 0
    assert "iom decisions import" in result.output
    assert not list(tmp_path.glob("outputs/impact-*"))

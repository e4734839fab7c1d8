"""What the effect is worth and whether the scheme pays for itself: the break-even in the manner
of the IOM Efficiency Toolkit's phase two (docs/impact.md).

Management cost of the evaluated follow-up: the managed person-years inside the treated people's
12 months after their meeting times the cost of one managed person-year, which is the annual
staff and fixed costs shared over the average caseload plus twelve months of interventions.
Benefit: the cost of crime avoided (the comparison's cost-of-crime rate minus the treated's, times
the treated's person-years at risk). Break-even effect: the management cost as a share of the
counterfactual cost of the treated's crime (the reduction the scheme needs to pay for itself).
"""

from __future__ import annotations

from pipeline.config import ImpactConfig

SENSITIVITY = 0.25  # each input moved by a quarter, one at a time


def cost_per_managed_year(settings: ImpactConfig, caseload: float) -> float:
    """The cost of managing one person for a year."""
    staff = sum(s.fte * s.annual_cost for s in settings.staff)
    shared = (staff + settings.fixed_annual) / caseload if caseload > 0 else 0.0
    return shared + 12 * settings.intervention_per_person_month


def break_even(management_cost: float, counterfactual_cost: float) -> float | None:
    """The effect size (share of offending prevented) at which the crime cost avoided equals the cost."""
    return management_cost / counterfactual_cost if counterfactual_cost > 0 else None


def value(settings: ImpactConfig, managed_years: float, caseload: float, cost_avoided: dict,
          counterfactual_cost: float, effect: dict) -> dict:
    """Net value, break-even effect and the one-at-a-time sensitivity table."""
    per_year = cost_per_managed_year(settings, caseload)
    cost = per_year * managed_years

    def net(avoided: float | None, management: float) -> float | None:
        return None if avoided is None else round(avoided - management, 2)

    rows = [{"input": "central", "change": "", "net_value": net(cost_avoided["estimate"], cost),
             "break_even_effect": break_even(cost, counterfactual_cost)}]
    staff = sum(s.fte * s.annual_cost for s in settings.staff)
    moves = {"staff costs": staff / caseload * managed_years if caseload > 0 else 0.0,
             "fixed costs": settings.fixed_annual / caseload * managed_years if caseload > 0 else 0.0,
             "intervention costs": 12 * settings.intervention_per_person_month * managed_years}
    for name, part in moves.items():
        for sign in (-1, 1):
            changed = cost + sign * SENSITIVITY * part
            rows.append({"input": name, "change": f"{sign * SENSITIVITY:+.0%}",
                         "net_value": net(cost_avoided["estimate"], changed),
                         "break_even_effect": break_even(changed, counterfactual_cost)})
    for sign in (-1, 1):
        factor = 1 + sign * SENSITIVITY
        avoided = None if cost_avoided["estimate"] is None else cost_avoided["estimate"] * factor
        rows.append({"input": "unit costs of crime", "change": f"{sign * SENSITIVITY:+.0%}",
                     "net_value": net(avoided, cost), "break_even_effect": break_even(cost, counterfactual_cost * factor)})
    for bound in ("low", "high"):
        rows.append({"input": "cost of crime avoided", "change": f"at its interval's {bound} end",
                     "net_value": net(cost_avoided.get(bound), cost),
                     "break_even_effect": break_even(cost, counterfactual_cost)})
    return {"cost_per_managed_year": round(per_year, 2), "managed_person_years": round(managed_years, 3),
            "caseload": round(caseload, 2), "management_cost": round(cost, 2),
            "cost_avoided": cost_avoided, "counterfactual_cost": round(counterfactual_cost, 2),
            "net_value": rows[0]["net_value"], "break_even_effect": rows[0]["break_even_effect"],
            "sensitivity": rows}

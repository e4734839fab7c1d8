"""How `iom` shows its results on the terminal: tables and plain lines, no logic.

Kept apart from `cli.py` (options, errors, locks) so each command stays one library call and a
call to one of these. `out` is stdout, `err` stderr; wide when piped so cron mail is not cut."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

out = Console(highlight=False, markup=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def table(title: str, columns: list[str], rows: list[list], justify_numbers: bool = True) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name)
    for row in rows:
        table.add_row(*[f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else ("" if v is None else str(v)) for v in row])
    return table


def show_ingest(report) -> None:
    rows = [[r.source, r.file_name, r.status, r.rows_read, r.rows_loaded, r.rows_rejected,
             ", ".join(f"{k} {v:,}" for k, v in r.reasons.items())] for r in report.loads]
    out.print(table("Loads", ["source", "file", "status", "read", "loaded", "rejected", "reasons"], rows))
    out.print()
    recon = []
    for r in report.reconciliation:
        ok = r["rows_read"] == r["rows_loaded"] + r["rows_rejected"]
        recon.append([r["source"], r["files"], r["rows_read"], r["rows_loaded"], r["rows_rejected"],
                      "read = loaded + rejected" if ok else "MISMATCH"])
    out.print(table("Reconciliation (all loads)", ["source", "files", "read", "loaded", "rejected", "check"], recon))
    out.print()
    show_link(report.link, report.relinked)
    if report.evaluation is not None:
        show_evaluation(report.evaluation)


def show_link(link, relinked: bool = True) -> None:
    """The link report: records per source and method, the probabilistic step, the queue."""
    link_rows = [[s["source"], s["records"], s["linked"], s["unlinked"], s["by_pnc"], s["by_nomis"], s["by_name_dob"],
                  s.get("by_probabilistic", 0), s.get("by_review", 0), s["ambiguous"]] for s in link.per_source]
    unchanged = "" if relinked else " (unchanged: nothing that decides the links changed since the last link)"
    out.print(table(f"Identity linking: {link.people:,} people{unchanged}",
                    ["source", "records", "linked across agencies", "unlinked", "by PNC", "by NOMIS",
                     "by name+DOB", "probabilistic", "by reviewer", "ambiguous"], link_rows))
    if link.model_version is not None:
        model = (f"model version {link.model_version}, estimated now ({link.model_estimated})" if link.model_estimated
                 else f"model version {link.model_version}")
        out.print(f"  probabilistic linking ({model}): {link.pairs_scored:,} pairs scored at or above the lower "
                  f"threshold, {link.auto_linked:,} at or above their upper threshold (linked)")
        if link.pairs_compared:
            out.print(f"  pairs compared: {link.pairs_compared:,} from {len(link.blocks_used or ()):,} blocks "
                      f"within the pair budget, {link.probabilistic_seconds:.1f} s")
        out.print(f"  review queue: {link.review_queue:,} pairs waiting for a decision (`iom links review`)")
        if link.conflicts:
            out.print(f"  not applied: {link.conflicts:,} accepted links that would join two PNC ids, match two "
                      "people, give a person a second record of one agency, or join a pair a reviewer rejected "
                      "(clusters split; the ambiguous ones are in the review queue)")
        if link.keys_merged or link.keys_split:
            out.print(f"  person keys: {link.keys_merged:,} merged into another person, {link.keys_split:,} split")
    if link.orphan_offences or link.orphan_events:
        out.print(f"  offences whose police id has no nominal: {link.orphan_offences:,}; "
                  f"probation events whose CRN has no case: {link.orphan_events:,} (kept, not scored)")


def show_evaluation(e) -> None:
    out.print(f"  against the synthetic truth ({e.records:,} records): precision {e.precision:.4f}, recall "
              f"{e.recall:.4f} ({e.true_predicted:,} of {e.true_pairs:,} true pairs linked, {e.false_pairs:,} "
              f"false; {e.missed_two_pnc_ids:,} missed pairs hold two different PNC ids)")


def show_run(result) -> None:
    if result.status == "skipped":
        out.print(result.message)
        return
    stats = result.stats  # a SelectionStats (rules.select)
    out.print(f"Run {result.run_id} (as of {result.as_of}): {result.counts.get('assessed', 0):,} people assessed")
    out.print(f"  assessed: {stats.assessed:,}")
    out.print(f"  eligible: {stats.eligible:,}")
    out.print("  ineligible: " + ", ".join(f"{reason} {n}" for reason, n in stats.ineligible.items()))
    out.print(f"  priority: {stats.priority:,}")
    if stats.priority_by_area:
        columns = ["selected", "capacity", "eligible", "reaching_min_score", "super_prolific"]
        out.print(table("  priority by area", ["area", *[c.replace("_", " ") for c in columns]],
                         [[area, *[getattr(a, c) for c in columns]] for area, a in stats.priority_by_area.items()]))
    else:
        out.print("  priority by area: ")
    out.print(f"  min score: {stats.min_score:,}")
    out.print(f"  super prolific: {stats.super_prolific:,}")
    out.print(f"  super prolific offences 12m: {stats.super_prolific_offences_12m:,}")
    out.print(f"  offences 12m: {stats.offences_12m:,}")
    if stats.super_prolific_offence_share is not None:
        out.print(f"  super prolific offence share: {stats.super_prolific_offence_share:.1%}")
    out.print(f"  release watch: {stats.release_watch:,}")
    moves = result.counts.get("movement", {})
    if moves:
        out.print("  movement: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in moves.items()))
    out.print(f"  release watch (in custody, release due within 90 days, would qualify): {result.counts.get('release_watch', 0):,}")
    panel = result.counts.get("decisions") or {}
    if any(panel.values()):
        out.print(f"  panel decisions: managed {panel['managed']:,} (in the cohort by accept {panel['included']:,}), "
                  f"kept out by reject {panel['excluded']:,}, deferred {panel['deferred']:,}, "
                  f"due for review {panel['due_for_review']:,}")
    out.print(f"Outputs: {result.output_dir}")
    model = result.model
    if model:
        split = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in result.counts.get("disagreement", {}).items())
        out.print(f"  advisory model: {model['name']} version {model['version']} ({model['kind']}, sha256 "
                  f"{model['artefact_sha256'][:12]}); disagreements: {split or 'none'}")
    names = ("scores.csv", "cohort.csv", "movement.csv", "release_watch.csv", "due_for_review.csv", "fairness.csv",
             "manifest.json") + (
        ("disagreement.csv",) if model else ())
    for name in names:
        out.print(f"  {result.output_dir / name}")
    out.print(f"Panel pack (open in a browser, works offline): {result.output_dir / 'pack.html'}")
    out.print(f"Panel workbook (decisions sheet): {result.output_dir / 'pack.xlsx'}")



def show_explanation(e, feature_lines) -> None:
    """`iom explain`: the score, why, the model beside it, the features and the timeline."""
    row, person = e.row, e.person
    name = f"{person.get('forenames') or ''} {person.get('surname') or ''}".strip()
    out.print(f"{name} ({person['person_key']}) in run {e.run_id}, as of {e.as_of}")
    ids = ", ".join(f"{k} {person[k]}" for k in ("police_person_id", "pnc_id", "crn", "nomis_id") if person.get(k))
    out.print(f"  identifiers: {ids}")
    if row.get("eligible"):
        status = f"rank {row.get('rank')} overall, {row.get('area_rank')} in {row.get('area')}"
    else:
        status = f"not eligible: {row.get('ineligible_reason')}"
    cohorts = [c for c, flag in (("priority cohort", "priority"), ("super-prolific", "super_prolific")) if row.get(flag)]
    out.print(f"  score {row.get('score')}: {status}; " + (
        f"proposed for the {' and '.join(cohorts)} ({row.get('cohort_type') or 'n/a'})" if cohorts
        else f"not proposed ({row.get('selection_note') or 'below the cohort definition'})"))
    if row.get("decision_note"):
        out.print(f"  panel decision: {row['decision_note']}" + (" (managed)" if row.get("managed") else ""))
    out.print("\nWhy (each component of the score):")
    for line in (row.get("reasons") or "no points awarded").splitlines():
        out.print(f"  {line}")
    if e.model and e.model.get("note"):
        out.print(f"\nAdvisory model ({e.model['name']} version {e.model['version']}): {e.model['note']}")
    elif e.model and e.model.get("error"):
        out.print(f"\nAdvisory model ({e.model['name']} version {e.model['version']}): not shown, {e.model['error']}")
    elif e.model:
        m = e.model
        out.print(f"\nAdvisory model ({m['name']} version {m['version']}, {m['kind']}; advisory only, the score "
                  "above decides):")
        out.print(f"  probability {m['probability']:.0%} ({row.get('model_band')}), rank {row.get('model_rank') or 'n/a'} "
                  f"among the eligible; contributions in {m['unit']}")
        for label, items in (("pushed up by", m["up"]), ("pushed down by", m["down"])):
            shown = "; ".join(f"{f} = {show_value(v)} ({c:+.2f})" for f, v, c in items) or "nothing"
            out.print(f"  {label}: {shown}")
    out.print("\nFeature values at the as-of date:")
    skip = {"person_key", "reasons", "surname", "forenames", "date_of_birth", "ethnicity", "managed", "decision",
            "decision_cohort_type", "decision_date", "review_date", "due_for_review", "decision_note"}
    out.print(table("", ["feature", "value"], [list(x) for x in feature_lines(row, skip)]))
    if getattr(e, "links", None) is not None:
        from pipeline.link.review import evidence_lines

        out.print("\nHow the records were linked:")
        for line in evidence_lines(e.links):
            out.print(f"  {line}")
    out.print("\nTimeline (newest first):")
    out.print(table("", ["date", "agency", "event", "detail"],
                     [[t["day"], t["agency"], t["event"], t["detail"]] for t in e.timeline]))



def show_value(value) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "unknown"}[value]
    return f"{value:.2f}" if isinstance(value, float) else str(value)



def show_training(result) -> None:
    """`iom train`: the window, the test figures side by side, the registry's verdict."""
    s = result.summary
    window = s["window"]
    out.print(f"Training {result.train_id}: snapshots {window['from']} to {window['to']} (test from "
              f"{window['test_dates'][0]}), target {window['target']} within {window['horizon_days']} days")
    out.print("  rows: " + "; ".join(f"{p} {c['rows']:,} ({c['positives']:,} positive)" for p, c in s["counts"].items()))
    rows = [[r["scorer"] + (" (chosen)" if r["chosen"] else ""), fmt(r["auc"]),
             f"{fmt(r['auc_low'])}-{fmt(r['auc_high'])}", fmt(r["average_precision"]), fmt(r["brier"], 4),
             "" if r["precision_at_cohort"] is None else f"{r['precision_at_cohort']:.1%}",
             "" if r["capture_offences"] is None else f"{r['capture_offences']:.1%}"]
            for r in result.metrics.iter_rows(named=True)]
    out.print(table("Test period, test people (the same rows for every scorer)",
                     ["scorer", "AUC", "95% CI", "AP", "Brier", "precision", "capture"], rows))
    if s.get("choice"):
        out.print(f"  kept {result.kind}: {s['choice']}")
    verdict = ("moved to this version" if result.champion else
               f"not moved (the test AUC must beat the rules score's by {s['champion_margin']:+.3f})")
    out.print(f"Registered {result.model_name} version {result.model_version} ({result.kind}) in {result.tracking_uri}; "
              f"MLflow run {result.run_id}; alias champion {verdict}")
    out.print(f"  artefact sha256 {result.sha256}")
    out.print(f"Outputs: {result.output_dir}")
    for name in ("model_card.md", "metrics.csv", "calibration.csv", "fairness.csv", "train.json"):
        out.print(f"  {result.output_dir / name}")



def fmt(value, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"



def show_backtest(result, horizon_days: int) -> None:
    """`iom backtest`: the dates, the population, the pooled figures, fairness and the outputs."""
    out.print(f"Back-test {result.backtest_id}: {len(result.dates)} as-of dates from {result.dates[0]} to "
              f"{result.dates[-1]}, window {horizon_days} days, data to {result.last_covered}")
    for name, summary in result.summary["rule_sets"].items():
        p = summary["population"]
        out.print(f"  {name}: {p['evaluated']:,} eligible person-dates evaluated ({p['evaluated_from_release']:,} "
                  f"followed from their release; {p['left_out_no_complete_window']:,} left out, no complete window)")
    pooled = result.metrics.filter(result.metrics["as_of"].is_null())

    def pct(value):
        return "" if value is None else f"{value:.1%}"

    rows = [[r["rule_set"], r["scorer"], f"{r['auc']:.3f}" if r["auc"] is not None else "",
             f"{r['auc_low']:.3f}-{r['auc_high']:.3f}" if r["auc_low"] is not None else "",
             f"{r['average_precision']:.3f}" if r["average_precision"] is not None else "",
             r["cohort_size"], pct(r["precision_at_cohort"]), pct(r["capture_offences"]),
             pct(r["capture_neighbourhood"])] for r in pooled.iter_rows(named=True)]
    out.print(table("Pooled over the as-of dates (eligible people with a complete window)",
                     ["rule set", "score", "AUC", "95% CI", "AP", "selected", "precision", "capture", "capture NC"],
                     rows))
    for name, summary in result.summary["rule_sets"].items():
        flagged = summary["fairness"]["flagged"]
        out.print(f"Fairness ({name}): {summary['fairness']['checked']:,} ratios checked, {len(flagged):,} outside "
                  f"{summary['fairness']['ratio_range'][0]}-{summary['fairness']['ratio_range'][1]} (fairness.csv)")
    out.print(f"Outputs: {result.output_dir}")
    for name in ("metrics.csv", "bands.csv", "curves.csv", "fairness.csv", "backtest.json", "backtest.svg"):
        out.print(f"  {result.output_dir / name}")


def show_impact(result) -> None:
    """`iom impact`: the effect with its interval, the naive figure beside it, the value and break-even."""
    s = result.summary

    def pct(figure):
        if figure.get("estimate") is None:
            return "not estimable"
        low, high = figure.get("low"), figure.get("high")
        return f"{figure['estimate']:.1%}" + (f" (95% CI {low:.1%} to {high:.1%})" if low is not None else "")

    out.print(f"Impact {result.impact_id}: meetings {s['from']} to {s['to']}, {s['managed_people']:,} managed people "
              f"({s['treated_people']:,} near the capacity line against {s['comparison_people']:,} comparison people), "
              f"data to {s['last_covered']}")
    out.print(f"  reduction in offending (near the capacity line, the headline): {pct(s['effect'])}")
    share = s.get("managed_share") or {}
    if share.get("managed") is not None and share.get("comparison") is not None:
        out.print(f"  while managed: {pct(s['effect_while_managed'])} (the year after spent managed: "
                  f"{share['managed']:.0%} of the managed people's, {share['comparison']:.0%} of the comparison's)")
    out.print(f"  difference-in-differences: {pct(s['did_effect'])}")
    out.print(f"  naive before/after (overstated by regression to the mean): {pct(s['naive_effect'])}")
    out.print(f"  neighbourhood crime (matched): {pct(s['neighbourhood_effect'])}")
    v = s["value"]
    be = v["break_even_effect"]
    out.print(f"  cost of crime avoided {pct_money(v['cost_avoided'])}; management cost £{v['management_cost']:,.0f}; "
              f"net value " + ("n/a" if v["net_value"] is None else f"£{v['net_value']:,.0f}")
              + "; break-even reduction " + ("n/a" if be is None or not v["management_cost"] else f"{be:.1%}"))
    if not v["management_cost"]:
        out.print("  no management costs are set: add [impact] staff, intervention and fixed costs for the break-even")
    out.print(f"Outputs: {result.output_dir}")
    for name in ("impact.csv", "impact.json", "impact.svg"):
        out.print(f"  {result.output_dir / name}")


def pct_money(figure: dict) -> str:
    if figure.get("estimate") is None:
        return "n/a"
    text = f"£{figure['estimate']:,.0f}"
    if figure.get("low") is not None:
        text += f" (95% CI £{figure['low']:,.0f} to £{figure['high']:,.0f})"
    return text


def show_demo_step(step) -> None:
    """One step of `iom demo` as it finishes (pipeline.demo)."""
    name, r = step.name, step.result
    if name == "generated":
        data, config_path, when = r
        out.print(f"Extract date {when}; injected faults (to show quarantine at work): "
                  + ", ".join(f"{k} {v:,}" for k, v in sorted(data.faults.items())))
    elif name == "ingested":
        show_ingest(r)
        if r.link.review_queue:
            out.print(f"{r.link.review_queue:,} uncertain pairs wait for a reviewer: "
                      f"uv run iom links review --config {step.config_path} --out review.csv")
    elif name == "example_link" and r is not None:
        key, lines = r
        out.print(f"\nA person linked probabilistically ({key}; `iom explain {key}` shows it with the score):")
        for line in lines:
            out.print(f"  {line}")
    elif name == "decisions":
        out.print(f"\nPast panel decisions of the simulated scheme imported ({r.decisions:,}: "
                  + ", ".join(f"{k} {v:,}" for k, v in r.by_decision.items()) + ")")
    elif name == "backtest":
        out.print()
        from evaluation.backtest import DEFAULT_HORIZON_DAYS  # the demo back-tests with the defaults

        show_backtest(r, DEFAULT_HORIZON_DAYS)
    elif name == "impact":
        out.print()
        show_impact(r)
    elif name == "trained":
        out.print()
        show_training(r)
    elif name == "run":
        out.print()
        show_run(r)

"""The model card: what the model is, what it was trained and tested on, how it did against the
rules score, its fairness tables, what it is for and what it is not. Logged with every trained
model (MLflow artefact `model_card.md`) and written to OUTPUTS/train-ID/model_card.md; the
template is documented in docs/model.md."""

from __future__ import annotations

import polars as pl

from evaluation.fairness import fairness_summary
from models.dataset import AGE_DERIVED, SEX_DERIVED, TARGETS

INTENDED_USE = (
    "Advisory only. A calibrated probability shown to the IOM selection panel beside the rules score and its "
    "reasons, so that the panel can see where the two disagree and look again. It never selects, removes or "
    "reorders anyone by itself: the rules score decides the proposed cohorts unless the rule set declares a "
    "blend, and the panel decides."
)
LIMITS = (
    "- Trained on recorded offending: it predicts being caught and recorded, which depends on policing as "
    "well as on behaviour; groups policed more heavily look riskier.",
    "- The label counts offences by the outcomes the rule set counts (charges, cautions, convictions ... and "
    "pending), as known at the end of each window; later outcomes are not seen.",
    "- People in custody at a snapshot are followed from their release; people without a complete window are "
    "left out, so the very newest offenders and long custody are under-represented.",
    "- Training snapshots overlap in time with each other (the same people month after month); the test people "
    "are disjoint from the training people, but the test period may share calendar time with the training "
    "labels unless the embargo is set.",
    "- Calibrated on this workspace's data: a probability is a rate among similar people here, not a "
    "statement about one person. Recalibrate (retrain) when the data, the rules' counted outcomes or practice change.",
    "- Not validated on real data until the held-out study has been run (target AUC 0.74).",
)


def _f(value, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "" if value is None else f"{value:.1%}"


def render(info: dict, metrics: pl.DataFrame, calibration: pl.DataFrame, fairness: pl.DataFrame, kind: str,
           champion: bool, margin: float, sha256: str, weights: list[tuple[str, float]] | None) -> str:
    window = info["window"]
    features = info["features"]
    lines = [
        f"# Model card: IOM Cohort advisory model ({kind})",
        "",
        "**ADVISORY ONLY: shown beside the rules score and its reasons, never instead of them.**",
        "",
        "## Data window",
        "",
        f"- Target: {TARGETS[window['target']]} (counted as the rule set counts it) within {window['horizon_days']} "
        f"days of the snapshot date, time at risk as in the back-test.",
        f"- Snapshots every {window['every']} from {window['from']} to {window['to']}; the data cover to "
        f"{window['last_covered']}; every window lies inside the data.",
        f"- Training dates: {', '.join(window['train_dates'])}.",
        f"- Test dates: {', '.join(window['test_dates'])}.",
        f"- Split: {info['split']}.",
        "- Rows (person-snapshots) and positives: " + "; ".join(
            f"{part} {c['rows']:,} ({c['positives']:,} positive)" for part, c in info["counts"].items()) + ".",
        f"- Rules compared: {info['rules']['name']} {info['rules']['version']} (sha256 {info['rules']['sha256'][:12]}).",
        "",
        "## Model",
        "",
        f"- Kind: {kind}, calibrated by {info['calibration']} regression on the calibration people.",
        *([f"- Kept among the candidates ({', '.join(info['candidates'])}): {info['choice']}."]
          if info.get("choice") else []),
        *([f"- Trained on a fixed subsample of {info['people_sampled']:,} people ([model] max_people)."]
          if info.get("people_sampled") else []),
        f"- Artefact sha256: `{sha256}`.",
        f"- Champion: {'yes' if champion else 'no'} (the alias moves only when the test AUC beats the rules "
        f"score's by {margin:+.3f}).",
        "",
        "## Inputs",
        "",
        f"{len(features)} features: " + ", ".join(f"`{f}`" for f in features) + ".",
        "",
        "Ethnicity, sex, age, date of birth and area are never inputs (ethnicity, sex and age band are used "
        "below for monitoring only).",
        "- Age-derived inputs: " + (", ".join(f"`{f}`" for f in AGE_DERIVED if f in features) or "none") + ".",
        "- Sex-derived inputs: " + (", ".join(f"`{f}`" for f in SEX_DERIVED if f in features) or "none")
        + " (OGRS3's formula has terms for sex and age).",
        "- Left out by the config (`[model] exclude_features`): "
        + (", ".join(f"`{f}`" for f in info["excluded_features"]) or "none") + ".",
        "- Left out because the training data gave them one value or none (an extract the workspace does not "
        "have, such as probation's OGRS3 and RoSH): "
        + (", ".join(f"`{f}`" for f in info.get("features_without_values", [])) or "none") + ".",
        "",
        "## Test metrics (the same test rows for every scorer)",
        "",
        "| scorer | AUC | 95% CI | average precision | Brier | precision at cohort | capture of offences | base rate |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in metrics.iter_rows(named=True):
        name = f"{r['scorer']} (chosen)" if r.get("chosen") else r["scorer"]
        lines.append(f"| {name} | {_f(r['auc'])} | {_f(r['auc_low'])}-{_f(r['auc_high'])} | "
                     f"{_f(r['average_precision'])} | {_f(r['brier'], 4)} | {_pct(r['precision_at_cohort'])} | "
                     f"{_pct(r['capture_offences'])} | {_pct(r['base_rate'])} |")
    lines += ["", "The rules score's Brier score is that of its isotonic mapping to a probability on the "
              "calibration people.", "", "## Calibration (test rows, deciles of the prediction)", "",
              "| scorer | bin | people | mean predicted | observed |", "| --- | --- | --- | --- | --- |"]
    for r in calibration.iter_rows(named=True):
        lines.append(f"| {r['scorer']} | {r['bin']} | {r['people']:,} | {_pct(r['mean_predicted'])} | "
                     f"{_pct(r['observed_rate'])} |")
    lines += ["", "## Fairness (test rows; the back-test's tables, fairness.csv)", ""]
    for scorer in ("model", "rules"):
        summary = fairness_summary(fairness.filter(pl.col("scorer") == scorer).drop("scorer"))
        lines.append(f"- {scorer}: {summary['checked']:,} ratios checked, {len(summary['flagged']):,} outside "
                     f"{summary['ratio_range'][0]}-{summary['ratio_range'][1]}.")
    headline = fairness.filter(pl.col("metric").is_in(["selection_rate", "false_positive_rate", "false_negative_rate"]))
    lines += ["", "| scorer | dimension | group | metric | people | value | ratio to largest group |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in headline.sort(["dimension", "group", "metric", "scorer"]).iter_rows(named=True):
        lines.append(f"| {r['scorer']} | {r['dimension']} | {r['group']} | {r['metric']} | {r['people']:,} | "
                     f"{_f(r['value'])} | {_f(r['ratio'])}{' (flagged)' if r['flagged'] else ''} |")
    if weights:
        lines += ["", "## Coefficients (log-odds per standard deviation)", "", "| feature | coefficient |",
                  "| --- | --- |"]
        lines += [f"| `{f}` | {w:+.3f} |" for f, w in sorted(weights, key=lambda x: -abs(x[1]))]
    lines += ["", "## Intended use", "", INTENDED_USE, "", "## Limits", "", *LIMITS, ""]
    return "\n".join(lines)

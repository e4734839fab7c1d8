"""`iom train`: fit, calibrate and test the advisory model, then log and register it in MLflow.

Candidates (`[model] kinds`): a logistic regression (median imputation with missing-value
flags, standardised inputs) and scikit-learn's HistGradientBoostingClassifier (missing values
handled natively). Each is fitted on the 'fit' people at the training dates, then calibrated
(`[model] calibration`: isotonic or sigmoid, scikit-learn's CalibratedClassifierCV over the
frozen fitted model) on the 'calibration' people, whom it never saw. The candidate with the
best calibration-set ROC AUC is kept (choosing on the test set would flatter its test figures),
except that the logistic regression is kept unless another beats it there by
`[model] prefer_logistic_within` (`choose`).

The test people at the later test dates then judge it against the rules score on the very same
rows, with the back-test's metrics (`evaluation.backtest`'s scorers: ROC AUC with its bootstrap
interval, average precision, precision and capture at the cohort size, the model selecting in
each area as many as the rules did), the Brier score (the rules score mapped to a probability
by isotonic regression on the calibration people, so both are probabilities), a calibration
table, and the back-test's fairness tables for both. The split is `models.dataset`'s.

The model is registered; the alias `champion` moves to it only when its test AUC beats the rules
score's by `[model] champion_margin` (`beats_rules`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from evaluation.backtest import evaluate_scores, parse_every, plan_dates, selected_at_quota
from evaluation.fairness import backtest_fairness, with_groups
from features.reference import load_offence_reference
from models import card, dataset, registry
from pipeline.config import Config
from pipeline.errors import UsageError
from pipeline.lock import workspace_lock
from pipeline.warehouse import connect, run_sql, transaction
from rules.schema import load_rules

log = logging.getLogger(__name__)

ARTEFACT_FORMAT = 1
CALIBRATION_BINS = 10
# Moved into pipeline/schema.py at the merge: the register of trainings in this workspace.



@dataclass
class Candidate:
    kind: str
    base: object  # the fitted estimator
    calibrated: object  # CalibratedClassifierCV over the frozen base
    calibration_auc: float | None
    fit_seconds: float


@dataclass
class TrainResult:
    train_id: str
    output_dir: Path
    kind: str
    model_name: str
    model_version: str
    run_id: str
    sha256: str
    champion: bool
    tracking_uri: str
    metrics: pl.DataFrame
    summary: dict = field(default_factory=dict)


def make_estimator(kind: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logistic":
        return Pipeline([
            ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=1.0, max_iter=2000)),
        ])
    if kind == "hist_gradient_boosting":
        # 60 trees of 15 leaves: on 100k generated people as good as 300 of 31 (test AUC 0.759
        # against 0.754) at a fifth of the scoring cost (docs/model.md)
        return HistGradientBoostingClassifier(
            learning_rate=0.2, max_iter=60, max_leaf_nodes=15, min_samples_leaf=40, l2_regularization=1.0,
            early_stopping=True, validation_fraction=0.1, n_iter_no_change=15, random_state=seed)
    raise UsageError(f"unknown model kind {kind!r}; allowed: logistic, hist_gradient_boosting")


def fit_candidate(kind: str, x_fit: np.ndarray, y_fit: np.ndarray, x_cal: np.ndarray, y_cal: np.ndarray,
                  method: str, seed: int) -> Candidate:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    from evaluation.metrics import roc_auc

    started = time.perf_counter()
    base = make_estimator(kind, seed).fit(x_fit, y_fit)
    calibrated = CalibratedClassifierCV(FrozenEstimator(base), method=method).fit(x_cal, y_cal)
    seconds = round(time.perf_counter() - started, 2)
    auc = roc_auc(y_cal, calibrated.predict_proba(x_cal)[:, 1])
    log.info("candidate %s: calibration AUC %s, fitted in %.1f s", kind, f"{auc:.4f}" if auc else "n/a", seconds)
    return Candidate(kind, base, calibrated, auc, seconds)


def choose(candidates: list[Candidate], prefer_logistic_within: float) -> tuple[Candidate, str]:
    """The candidate kept, and why: the best calibration-set AUC, except that the logistic
    regression is kept when no other beats its AUC by `prefer_logistic_within` (it scores in a
    fraction of gradient boosting's time and its contributions are exact, not approximate)."""
    best = max(candidates, key=lambda c: c.calibration_auc or 0.0)
    logistic = next((c for c in candidates if c.kind == "logistic"), None)
    if logistic is None or best is logistic:
        return best, "the best calibration AUC of the candidates"
    gain = (best.calibration_auc or 0.0) - (logistic.calibration_auc or 0.0)
    if gain < prefer_logistic_within:
        return logistic, (f"{best.kind}'s calibration AUC is higher by only {gain:.4f}, less than "
                          f"prefer_logistic_within ({prefer_logistic_within:g})")
    return best, (f"the best calibration AUC, {gain:.4f} above the logistic regression's (at least "
                  f"prefer_logistic_within, {prefer_logistic_within:g})")


def beats_rules(model_auc: float | None, rules_auc: float | None, margin: float) -> bool:
    """The champion rule: the model's test AUC is at least the rules score's plus the margin."""
    return model_auc is not None and rules_auc is not None and model_auc >= rules_auc + margin


def calibration_table(y: np.ndarray, p: np.ndarray, scorer: str, bins: int = CALIBRATION_BINS) -> pl.DataFrame:
    """[one bin of predicted probability] (deciles of the prediction, ties kept together): people,
    mean predicted probability, observed rate."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    frame = pl.DataFrame({"bin": index, "p": p, "y": y})
    return (frame.group_by("bin").agg(pl.len().cast(pl.Int64).alias("people"),
                                      pl.col("p").mean().alias("mean_predicted"),
                                      pl.col("y").mean().alias("observed_rate"))
            .sort("bin").select(pl.lit(scorer).alias("scorer"), (pl.col("bin") + 1).alias("bin"), "people",
                                "mean_predicted", "observed_rate"))


def _rules_probability(cal_score: np.ndarray, y_cal: np.ndarray, test: pl.DataFrame) -> np.ndarray:
    """The rules score as a probability: isotonic regression of the label on the score, fitted on
    the calibration people (so that a Brier score and a calibration table mean the same for both)."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    iso.fit(cal_score.astype(float), y_cal.astype(float))
    return iso.predict(test.get_column("score").to_numpy().astype(float))


def _reference_values(x_fit: np.ndarray, features: tuple[str, ...]) -> dict[str, float | None]:
    """Each input's median on the fit people: the reference a non-linear model's contributions
    are measured from (`models.predict.contributions`). A column at a time: nanmedian over the
    whole matrix would copy it."""
    medians = [np.nanmedian(x_fit[:, j]) if x_fit.shape[0] else np.nan for j in range(len(features))]
    return {f: (None if np.isnan(m) else float(m)) for f, m in zip(features, medians, strict=True)}


def _note_peak(timings: dict, phase: str) -> None:
    """The process's peak resident memory so far, in MiB, after a phase (where training's peak
    is; Linux and macOS report it, elsewhere it is left out)."""
    try:
        import resource
    except ImportError:  # Windows
        return
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timings[f"peak_mib_after_{phase}"] = round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024))


def artefact_bytes(candidate: Candidate, features: tuple[str, ...], reference: dict, info: dict) -> bytes:
    """The pickled artefact: the calibrated model, its inputs and what explains it."""
    payload = {"format": ARTEFACT_FORMAT, "kind": candidate.kind, "features": list(features),
               "estimator": candidate.calibrated, "base": candidate.base, "reference": reference, "info": info}
    buffer = io.BytesIO()
    pickle.dump(payload, buffer, protocol=5)
    return buffer.getvalue()


def _metric_rows(test: pl.DataFrame, y: np.ndarray, probabilities: dict[str, np.ndarray]) -> list[dict]:
    """The back-test's metrics per scorer on the test rows, plus the Brier score."""
    from sklearn.metrics import brier_score_loss

    scorers = {"rules": pl.col("score").cast(pl.Float64),
               **{name: pl.col(f"_p_{name}") for name in probabilities if name != "rules_probability"}}
    frame = test.with_columns(pl.col("label").cast(pl.Boolean).alias("any_offence"),  # the model's target
                              *[pl.Series(f"_p_{n}", p) for n, p in probabilities.items()])
    rows = []
    for name, values in evaluate_scores(frame, scorers, bootstrap=True).items():
        p = probabilities.get(name if name != "rules" else "rules_probability")
        brier = float(brier_score_loss(y, p)) if p is not None and 0 < y.sum() < y.size else None
        rows.append({"scorer": name, **values, "brier": brier})
    return rows


def train_model(config: Config, start: date | None = None, end: date | None = None, horizon_days: int | None = None,
                target: str | None = None, out_dir: Path | None = None) -> TrainResult:
    """The whole training: plan the snapshots, build the data, fit, calibrate, test, register."""
    settings = config.model
    horizon = horizon_days or settings.horizon_days
    target = target or settings.target
    if target not in dataset.TARGETS:
        raise UsageError(f"--target {target!r}: allowed: {', '.join(dataset.TARGETS)}")
    if horizon < 1:
        raise UsageError("--horizon-days must be at least 1")
    features = dataset.model_features(settings.exclude_features)
    rules = load_rules(config.workspace.rules if config.workspace.rules == "default"
                       else str(config.resolve(config.workspace.rules)))
    reference = load_offence_reference(
        config.resolve(config.workspace.offence_reference) if config.workspace.offence_reference else None)
    store = registry.open_store(config)  # an unreachable store fails now, not after the training
    timings: dict[str, float] = {}
    with workspace_lock(config.warehouse_path, "train"):
        con = connect(config)
        try:
            step = time.perf_counter()
            dates, last_covered = plan_dates(con, start, end, parse_every(settings.every), horizon)
            plan = dataset.plan_split(dates, horizon, settings.test_snapshots, settings.test_people_share,
                                      settings.calibration_people_share, settings.seed, settings.embargo)
            data = dataset.training_data(con, rules, reference, plan, horizon, last_covered, target, features,
                                         settings.max_people)
            counts = dataset.check_positives(data.counts(), settings.min_positives, target)
            data, features, unused = dataset.informative(data, features)
            timings["dataset_s"] = round(time.perf_counter() - step, 2)
            _note_peak(timings, "dataset")
            step = time.perf_counter()
            with threadpool_limits(settings.threads):
                candidates = [fit_candidate(k, data.x_fit, data.y_fit, data.x_cal, data.y_cal, settings.calibration,
                                            settings.seed) for k in settings.kinds]
            best, choice = choose(candidates, settings.prefer_logistic_within)
            timings["fit_s"] = round(time.perf_counter() - step, 2)
            _note_peak(timings, "fit")
            reference_values = _reference_values(data.x_fit, features)
            x_test, y_test, test = data.x_test, data.test.get_column("label").to_numpy(), data.test
            rules_probability = _rules_probability(data.cal_score, data.y_cal, test)
            people_sampled = data.people_sampled
            del data  # the fit and calibration rows: nothing below reads them
            step = time.perf_counter()
            with threadpool_limits(settings.threads):
                probabilities = {c.kind: c.calibrated.predict_proba(x_test)[:, 1] for c in candidates}
            probabilities["rules_probability"] = rules_probability
            del x_test
            metrics = pl.DataFrame(_metric_rows(test, y_test, probabilities))
            metrics = metrics.with_columns((pl.col("scorer") == best.kind).alias("chosen"))
            calibration = pl.concat([calibration_table(y_test, probabilities[best.kind], "model"),
                                     calibration_table(y_test, probabilities["rules_probability"], "rules")])
            scored_test = test.with_columns(pl.Series("model_probability", probabilities[best.kind]))
            fairness = _fairness(con, scored_test)
            timings["evaluate_s"] = round(time.perf_counter() - step, 2)
            _note_peak(timings, "evaluate")
            by_name = {r["scorer"]: r for r in metrics.iter_rows(named=True)}
            model_auc, rules_auc = by_name[best.kind]["auc"], by_name["rules"]["auc"]
            champion = beats_rules(model_auc, rules_auc, settings.champion_margin)
            window = {"from": dates[0].isoformat(), "to": dates[-1].isoformat(), "last_covered": last_covered.isoformat(),
                      "horizon_days": horizon, "target": target, "every": settings.every,
                      "train_dates": [d.isoformat() for d in plan.train_dates],
                      "test_dates": [d.isoformat() for d in plan.test_dates]}
            info = {"window": window, "split": plan.describe(), "counts": counts, "rules": {
                "name": rules.name, "version": rules.version, "sha256": rules.sha256}, "kind": best.kind,
                "calibration": settings.calibration, "choice": choice, "candidates": list(settings.kinds),
                "features": list(features),
                "excluded_features": list(settings.exclude_features), "features_without_values": unused,
                "people_sampled": people_sampled}
            blob = artefact_bytes(best, features, reference_values, info)
            sha = hashlib.sha256(blob).hexdigest()
            model_card = card.render(info, metrics, calibration, fairness, best.kind, champion,
                                     settings.champion_margin, sha, _linear_weights(best, features))
            params = {"kind": best.kind, "calibration": settings.calibration, "horizon_days": horizon,
                      "target": target, "from": window["from"], "to": window["to"], "snapshots": len(dates),
                      "test_snapshots": len(plan.test_dates), "test_people_share": settings.test_people_share,
                      "calibration_people_share": settings.calibration_people_share, "seed": settings.seed,
                      "embargo": settings.embargo, "rules": f"{rules.name} {rules.version}",
                      "n_features": len(features), "max_people": settings.max_people,
                      "prefer_logistic_within": settings.prefer_logistic_within, "choice": choice,
                      "candidates": ",".join(settings.kinds)}
            step = time.perf_counter()
            logged = registry.log_and_register(
                store, blob, sha, params=params, metrics=_flat_metrics(metrics, best.kind), info=info,
                card_text=model_card, tables={"metrics.csv": metrics, "calibration.csv": calibration,
                                              "fairness.csv": fairness}, champion=champion)
            timings["register_s"] = round(time.perf_counter() - step, 2)
            _note_peak(timings, "register")
            summary = {"kind": best.kind, "choice": choice, "model_version": logged.version, "mlflow_run_id": logged.run_id,
                       "artefact_sha256": sha, "champion": champion, "champion_margin": settings.champion_margin,
                       "test_auc": model_auc, "rules_test_auc": rules_auc, "counts": counts, "window": window,
                       "tracking_uri": logged.tracking_uri, "timings": timings}
            return _store(con, config, summary, metrics, calibration, fairness, model_card, out_dir, best.kind,
                          logged)
        finally:
            con.close()


def _fairness(con, test: pl.DataFrame) -> pl.DataFrame:
    """The back-test's fairness tables on the test rows: for the model (its selection at the
    cohort size; bands of its probability in percent) and for the rules (the priority cohort)."""
    grouped = with_groups(con, test.with_columns(pl.col("label").cast(pl.Boolean).alias("any_offence")))
    model = grouped.with_columns(selected_at_quota(grouped, "model_probability"),
                                 (pl.col("model_probability") * 100).alias("score"))
    rules = grouped.with_columns(pl.col("priority").alias("selected"))
    return pl.concat([backtest_fairness(model).select(pl.lit("model").alias("scorer"), pl.all()),
                      backtest_fairness(rules).select(pl.lit("rules").alias("scorer"), pl.all())])


def _linear_weights(candidate: Candidate, features: tuple[str, ...]) -> list[tuple[str, float]] | None:
    """The logistic model's coefficients per standardised input (missing-value flags added to
    their feature), for the card; None for other kinds."""
    if candidate.kind != "logistic":
        return None
    from models.predict import linear_weights

    return linear_weights(candidate.base, features)


def _flat_metrics(metrics: pl.DataFrame, kind: str) -> dict[str, float]:
    flat = {}
    for row in metrics.iter_rows(named=True):
        prefix = "model" if row["scorer"] == kind else row["scorer"]
        for key in ("auc", "auc_low", "auc_high", "average_precision", "brier", "precision_at_cohort",
                    "capture_offences", "capture_neighbourhood", "base_rate"):
            if row.get(key) is not None:
                flat[f"{prefix}_{key}"] = float(row[key])
    return flat


def _store(con, config: Config, summary: dict, metrics, calibration, fairness, model_card: str,
           out_dir: Path | None, kind: str, logged) -> TrainResult:
    seq = run_sql(con, "model: store", "SELECT coalesce(max(seq), 0) + 1 FROM model_trainings").fetchone()[0]
    window = summary["window"]
    train_id = f"T{seq:04d}-{window['to']}"
    summary["train_id"] = train_id
    target = out_dir or config.outputs_path / f"train-{train_id}"
    staging = target.parent / f".tmp-{target.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True, mode=0o700)
    rounded = [frame.with_columns(pl.col(c).round(4) for c, t in frame.schema.items() if t == pl.Float64)
               for frame in (metrics, calibration, fairness)]
    for name, frame in zip(("metrics.csv", "calibration.csv", "fairness.csv"), rounded, strict=True):
        frame.write_csv(staging / name)
    (staging / "model_card.md").write_text(model_card)
    (staging / "train.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    with transaction(con):
        run_sql(con, "model: store", "INSERT INTO model_trainings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            train_id, seq, datetime.now(UTC).replace(tzinfo=None), window["from"], window["to"], window["horizon_days"],
            window["target"], kind, logged.name, logged.version, logged.run_id, summary["artefact_sha256"],
            summary["test_auc"], summary["rules_test_auc"], summary["champion"], str(target),
            json.dumps(summary, sort_keys=True, default=str)])
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    log.info("training %s: %s version %s written to %s", train_id, logged.name, logged.version, target)
    return TrainResult(train_id, target, kind, logged.name, logged.version, logged.run_id, summary["artefact_sha256"],
                       summary["champion"], logged.tracking_uri, metrics, summary)

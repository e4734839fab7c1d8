"""The MLflow tracking store and model registry, imported lazily (only `iom train` and a run or
explain that uses a model load MLflow; `iom --help`, `iom runs` and a run without a model never do).

Where: `[model] tracking_uri`, or the environment's `MLFLOW_TRACKING_URI` (which overrides the
file, as the IOM_* variables do), else an embedded SQLite store in the workspace
(`mlflow/mlflow.db`, artefacts in `mlflow/artifacts`): no server to start. A plain path is an
SQLite store at that path (relative to the folder of iom.toml), so two workspaces share one by
naming the same file. With an SQLite store the experiment keeps its artefacts beside the database.

What a training logs, in one MLflow run: the parameters, the metrics (model and rules on the
same test rows), the feature list, the window, the model card and its tables, and the artefact
(`model/model.pkl`, a pickle). The model version is registered with the artefact's sha256 as
the tag `artifact_sha256`; the alias `champion` moves only when the training says so.

A model file is code (unpickling runs it), and a shared store may be written by others: `load`
downloads the artefact, hashes it, and refuses it (ArtefactIntegrityError) unless the hash is
the one recorded at registration, the one `[model] sha256` pins, and (for a run being
explained) the one its manifest recorded. Only then is it unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pipeline.config import Config
from pipeline.errors import ArtefactIntegrityError, NotFoundError, RegistryError

log = logging.getLogger(__name__)

ARTEFACT_DIR = "model"
ARTEFACT_FILE = "model.pkl"
HASH_TAG = "artifact_sha256"
CHAMPION = "champion"
DEFAULT_STORE = Path("mlflow") / "mlflow.db"
# Fail fast on an unreachable server rather than retrying for minutes (MLflow's defaults).
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def tracking_uri(config: Config) -> str:
    """The tracking URI: the config's (or MLFLOW_TRACKING_URI's, applied by load_config), a
    plain path as an SQLite store, else the workspace's embedded store."""
    value = config.model.tracking_uri
    if not value:
        return f"sqlite:///{config.resolve(DEFAULT_STORE)}"
    if "://" in value or value.startswith("sqlite:"):
        return value
    return f"sqlite:///{config.resolve(value)}"


def redacted(uri: str) -> str:
    """The URI without a user name or password, for logs and manifests."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return uri


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@dataclass
class Store:
    """An open MLflow client on one tracking store."""

    client: object  # mlflow.tracking.MlflowClient
    uri: str
    name: str  # the registered model's name
    experiment: str

    @property
    def shown_uri(self) -> str:
        return redacted(self.uri)


def open_store(config: Config, create: bool = True) -> Store:
    """A client on the tracking store, checked to answer (RegistryError otherwise)."""
    uri = tracking_uri(config)
    path = _sqlite_path(uri)
    if path is not None:
        if path == config.resolve(DEFAULT_STORE) and create:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.parent.is_dir() or (not create and not path.is_file()):
            raise RegistryError(f"the model tracking store {path} does not exist",
                                hint="run `iom train` first, or set [model] tracking_uri (or MLFLOW_TRACKING_URI) "
                                     "to the store the model was trained in")
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as exc:  # any failure to reach or read the store: the URI is wrong or down
        raise RegistryError(f"the model tracking store {redacted(uri)} cannot be reached: "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                            hint="check [model] tracking_uri or MLFLOW_TRACKING_URI, and that the server is up") from None
    return Store(client, uri, config.model.name, config.model.experiment)


def _experiment_id(store: Store) -> str:
    found = store.client.get_experiment_by_name(store.experiment)
    if found is not None:
        return found.experiment_id
    path = _sqlite_path(store.uri)
    location = (path.parent / "artifacts").as_uri() if path is not None else None
    return store.client.create_experiment(store.experiment, artifact_location=location)


@dataclass
class Logged:
    name: str
    version: str
    run_id: str
    tracking_uri: str
    champion: bool


def log_and_register(store: Store, blob: bytes, sha256: str, params: dict, metrics: dict[str, float], info: dict,
                     card_text: str, tables: dict, champion: bool) -> Logged:
    """One MLflow run with everything a reader needs, then a registered model version; the
    alias `champion` is moved to it when `champion` is true."""
    client = store.client
    try:
        run = client.create_run(_experiment_id(store), run_name=f"iom-train-{info['window']['to']}",
                                tags={"iom.kind": info["kind"], "iom.advisory_only": "true"})
        run_id = run.info.run_id
        for key, value in params.items():
            client.log_param(run_id, key, "" if value is None else str(value))
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            (root / ARTEFACT_DIR).mkdir()
            (root / ARTEFACT_DIR / ARTEFACT_FILE).write_bytes(blob)
            (root / ARTEFACT_DIR / "features.json").write_text(json.dumps(info["features"], indent=1))
            (root / "model_card.md").write_text(card_text)
            (root / "window.json").write_text(json.dumps(info["window"], indent=1))
            for name, frame in tables.items():
                frame.write_csv(root / name)
            client.log_artifacts(run_id, str(root))
        client.set_tag(run_id, HASH_TAG, sha256)
        client.set_terminated(run_id)
        from mlflow.exceptions import MlflowException

        try:
            client.get_registered_model(store.name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            client.create_registered_model(store.name, description="IOM Cohort advisory reoffending model: "
                                           "shown beside the rules score, never instead of it")
        version = client.create_model_version(
            store.name, source=f"{run.info.artifact_uri}/{ARTEFACT_DIR}", run_id=run_id,
            tags={HASH_TAG: sha256, "kind": info["kind"], "target": info["window"]["target"]},
            description=card_text.split("\n\n", 2)[1] if "\n\n" in card_text else None)
        if champion:
            client.set_registered_model_alias(store.name, CHAMPION, version.version)
    except Exception as exc:
        raise RegistryError(f"logging the model to {store.shown_uri} failed: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
    log.info("registered %s version %s (run %s, sha256 %s)%s", store.name, version.version, run_id, sha256[:12],
             "; alias champion moved to it" if champion else "")
    return Logged(store.name, str(version.version), run_id, store.shown_uri, champion)


@dataclass
class LoadedModel:
    name: str
    version: str
    run_id: str
    sha256: str
    reference: str  # what was asked for: an alias or a version number
    tracking_uri: str  # redacted
    artefact: dict  # see models.train.artefact_bytes

    def manifest(self) -> dict:
        return {"name": self.name, "version": self.version, "run_id": self.run_id, "artefact_sha256": self.sha256,
                "asked_for": self.reference, "tracking_uri": self.tracking_uri, "kind": self.artefact["kind"],
                "target": self.artefact["info"]["window"]["target"],
                "horizon_days": self.artefact["info"]["window"]["horizon_days"],
                "features": len(self.artefact["features"])}


def _version(store: Store, reference: str):
    from mlflow.exceptions import MlflowException

    try:
        if reference.isdigit():
            return store.client.get_model_version(store.name, reference)
        return store.client.get_model_version_by_alias(store.name, reference)
    except MlflowException as exc:
        # a missing version or model is RESOURCE_DOES_NOT_EXIST; a missing alias, INVALID_PARAMETER_VALUE
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise NotFoundError(
                f"no model {store.name!r} {'version' if reference.isdigit() else 'alias'} {reference!r} in "
                f"{store.shown_uri}",
                hint="`iom train` registers a version; the alias champion is set only when a model beats "
                     "the rules score by [model] champion_margin") from None
        raise RegistryError(f"the model registry {store.shown_uri} failed: {str(exc).splitlines()[0][:200]}") from None


def load(config: Config, reference: str, expected_sha256: str | None = None) -> LoadedModel:
    """The registered model `reference` (an alias such as champion, or a version number),
    after checking its artefact's hash (see the module docstring)."""
    store = open_store(config, create=False)
    version = _version(store, reference)
    recorded = (version.tags or {}).get(HASH_TAG)
    with tempfile.TemporaryDirectory() as folder:
        try:
            from mlflow.artifacts import download_artifacts

            local = Path(download_artifacts(artifact_uri=version.source, dst_path=folder, tracking_uri=store.uri))
            blob = (local / ARTEFACT_FILE).read_bytes()
        except Exception as exc:
            raise RegistryError(f"the artefact of {store.name} version {version.version} cannot be read from "
                                f"{store.shown_uri}: {type(exc).__name__}") from None
    actual = hashlib.sha256(blob).hexdigest()
    wanted = [("recorded at registration", recorded), ("pinned in [model] sha256", config.model.sha256),
              ("recorded in the run's manifest", expected_sha256)]
    if not recorded:
        raise ArtefactIntegrityError(f"{store.name} version {version.version} has no recorded sha256: not loaded",
                                     hint="register models with `iom train`, which records the hash")
    for what, value in wanted:
        if value and value != actual:
            raise ArtefactIntegrityError(
                f"the artefact of {store.name} version {version.version} has sha256 {actual[:16]}..., not the "
                f"{value[:16]}... {what}: it was changed after registration and is not loaded",
                hint="retrain with `iom train`, or restore the artefact from a trusted copy")
    artefact = pickle.loads(blob)  # only now: the bytes are the ones registered
    log.info("model %s version %s loaded (sha256 %s)", store.name, version.version, actual[:12])
    return LoadedModel(store.name, str(version.version), version.run_id, actual, reference, store.shown_uri, artefact)

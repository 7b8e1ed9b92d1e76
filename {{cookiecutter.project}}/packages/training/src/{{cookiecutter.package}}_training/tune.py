"""`tune`: an Optuna search over each model's settings, its matrix weighting and time decay,
scored on a validation window cut from the END of the training period, so the test period
the gate judges on is never seen. Every trial is an MLflow child run; the best settings of each
model go to params.tuned.yaml, which params.yaml includes and DVC tracks: the next
`make pipeline` retrains with them.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import yaml

from {{ cookiecutter.package }}_core.cli import BadInput
from {{ cookiecutter.package }}_core.matrix import IdMap, relevance_matrix
from {{ cookiecutter.package }}_core.metrics import ranking_report
from {{ cookiecutter.package }}_core.models import ModelTooLarge, build_model
from {{ cookiecutter.package }}_core.shared import model_name, tracking_uri

from .config import Paths, merge_params, write_json
from .data_stages import temporal_split
from .model_stages import MatrixCache, matrix_settings

TUNED_PARAMS = "params.tuned.yaml"


def _itemknn(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "n_neighbors": trial.suggest_int("n_neighbors", 20, 800, log=True),
        "shrink": trial.suggest_float("shrink", 0.0, 200.0),
    }


def _rp3beta(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "alpha": trial.suggest_float("alpha", 0.2, 1.5),
        "beta": trial.suggest_float("beta", 0.0, 1.0),
        "n_neighbors": trial.suggest_int("n_neighbors", 20, 800, log=True),
    }


def _als(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "factors": trial.suggest_categorical("factors", [32, 64, 128, 192]),
        "regularization": trial.suggest_float("regularization", 1e-3, 50.0, log=True),
        "alpha": trial.suggest_float("alpha", 0.05, 50.0, log=True),
        "iterations": trial.suggest_int("iterations", 5, 30),
    }


def _ease(trial: optuna.Trial) -> dict[str, Any]:
    return {"l2": trial.suggest_float("l2", 1.0, 20000.0, log=True)}


# Each tunable model's search space (popularity has nothing to tune).
SPACES = {"itemknn": _itemknn, "rp3beta": _rp3beta, "als": _als, "ease": _ease}


def _matrix(trial: optuna.Trial) -> dict[str, Any]:
    decay = trial.suggest_categorical("decay", [False, True])
    return {
        "weighting": trial.suggest_categorical("weighting", ["sum", "log1p", "binary"]),
        "half_life_days": trial.suggest_float("half_life_days", 1.0, 90.0, log=True)
        if decay
        else None,
    }


class Validation:
    """The training period's last tune.validation_days days as a validation split: models fit
    on the events before it and are scored on the items its warm users first reached in it."""

    def __init__(self, events: pd.DataFrame, params: dict[str, Any]) -> None:
        days = (params.get("tune") or {}).get("validation_days", 7)
        metric = (params.get("tune") or {}).get("metric", "ndcg_at_10")
        if not isinstance(days, int) or days < 1:
            raise BadInput(f"tune.validation_days must be a positive integer, got {days!r}")
        self.metric = metric
        self.k = _k_of(metric)
        last_day = events["timestamp"].max().normalize()
        self.cutoff = last_day - pd.Timedelta(days - 1, unit="D")
        fit_events, pairs = temporal_split(events, self.cutoff, params["split"]["relevant_events"])
        if not fit_events.empty:
            self.matrices = MatrixCache(fit_events)
            # The users and items (so the rows scored) are the same whatever the weighting.
            first = self.matrices.get(matrix_settings(params, ""))
            users = first.users.index_of(pairs["user_id"].unique())
            self.rows = np.sort(users[users >= 0])
        if fit_events.empty or len(self.rows) == 0:
            raise BadInput(
                f"the validation window from {self.cutoff.date()} has {len(fit_events)} events "
                f"before it and no warm user with a new item in it; lower tune.validation_days"
            )
        self.relevant = relevance_matrix(pairs, IdMap(first.users.ids[self.rows]), first.items)
        self.days = days

    def score(self, name: str, model_params: dict[str, Any], matrix: dict[str, Any]) -> float:
        X = self.matrices.get(matrix).matrix
        model = build_model(name, model_params).fit(X)
        recommended, _ = model.recommend(X[self.rows], k=self.k)
        return ranking_report(recommended, self.relevant, [self.k], X.shape[1])[self.metric]

    def describe(self) -> str:
        return (
            f"validation window: events from {self.cutoff.date()} on ({self.days} days), "
            f"{len(self.rows):,} warm users"
        )


def _k_of(metric: str) -> int:
    name, _, k = metric.rpartition("_at_")
    if name not in ("ndcg", "recall", "precision", "map", "hit_rate") or not k.isdigit():
        raise BadInput(f"tune.metric must look like ndcg_at_10 or recall_at_20, got {metric!r}")
    return int(k)


def tune(
    params: dict[str, Any],
    paths: Paths,
    models: list[str] | None = None,
    trials: int | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Search each model's settings; write the best to params.tuned.yaml and
    reports/tuning.json. Returns the report."""
    import mlflow

    settings = params.get("tune") or {}
    models = models or list(settings.get("models") or SPACES)
    trials = int(trials or settings.get("trials", 25))
    timeout = float(timeout or settings.get("timeout_seconds", 300))
    unknown = [name for name in models if name not in SPACES]
    if unknown:
        tunable = ", ".join(SPACES)
        raise BadInput(f"cannot tune {', '.join(unknown)}: the tunable models are {tunable}")
    if trials < 1 or timeout <= 0:
        raise BadInput("tune.trials must be >= 1 and tune.timeout_seconds > 0")
    train = paths.split / "train.parquet"
    if not train.is_file():
        raise BadInput(f"{train} not found; run the data stages first (make pipeline)")
    validation = Validation(pd.read_parquet(train), params)
    print(validation.describe(), flush=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(f"{model_name()}-tuning")
    report: dict[str, Any] = {
        "metric": validation.metric,
        "validation_from": validation.cutoff.isoformat(),
        "validation_users": len(validation.rows),
        "models": {},
    }
    with mlflow.start_run(run_name="tune", tags={"kind": "tuning"}) as parent:
        report["mlflow_run_id"] = parent.info.run_id
        for name in models:
            report["models"][name] = _study(name, params, validation, trials, timeout, settings)
    _write_tuned(paths.root / TUNED_PARAMS, report, params)
    write_json(paths.reports / "tuning.json", report)
    return report


def _study(
    name: str,
    params: dict[str, Any],
    validation: Validation,
    trials: int,
    timeout: float,
    settings: dict[str, Any],
) -> dict[str, Any]:
    import mlflow

    current = {
        "model": {**build_model(name).get_params(), **(params["model"].get(name) or {})},
        "matrix": matrix_settings(params, name),
    }
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        model_params, matrix = SPACES[name](trial), _matrix(trial)
        matrix = {"event_weights": current["matrix"]["event_weights"], **matrix}
        trial.set_user_attr("model", model_params)
        trial.set_user_attr("matrix", matrix)
        with mlflow.start_run(run_name=f"{name} trial {trial.number}", nested=True):
            mlflow.log_params({"model": name, **model_params, **_flat(matrix, "matrix")})
            value = validation.score(name, model_params, matrix)
            mlflow.log_metric(validation.metric, value)
        return value

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.value is None:
            return
        shown = ", ".join(f"{key}={_short(value)}" for key, value in trial.params.items())
        print(
            f"{name} trial {trial.number + 1}/{trials}: {validation.metric} {trial.value:.4f} "
            f"(best {study.best_value:.4f}, {time.perf_counter() - started:.0f}s) {shown}",
            flush=True,
        )

    sampler = optuna.samplers.TPESampler(seed=int(settings.get("seed", 0)))
    study = optuna.create_study(direction="maximize", sampler=sampler, study_name=name)
    # The first trial is the settings in use, so tuning never ends below where it started.
    study.enqueue_trial(_as_trial_params(current))
    try:
        study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=[progress])
    except ModelTooLarge as error:
        print(f"{name}: {error}; not tuned", flush=True)
        return {"skipped": str(error)}
    first = study.trials[0].value
    best = study.best_trial
    return {
        "trials": len(study.trials),
        "seconds": round(time.perf_counter() - started, 1),
        "current": first,
        "best": best.value,
        "model": best.user_attrs["model"],
        "matrix": best.user_attrs["matrix"],
    }


def _as_trial_params(current: dict[str, Any]) -> dict[str, Any]:
    """The settings in use as values of the search space (names it does not search are
    ignored by Optuna)."""
    matrix = current["matrix"]
    decay = matrix.get("half_life_days") is not None
    values = {**current["model"], "weighting": matrix.get("weighting", "sum"), "decay": decay}
    if decay:
        values["half_life_days"] = matrix["half_life_days"]
    return values


def _write_tuned(path: Path, report: dict[str, Any], params: dict[str, Any]) -> None:
    """Merge each tuned model's best settings into params.tuned.yaml (models not tuned this
    time keep theirs), with a header saying where they came from."""
    existing = yaml.safe_load(path.read_text()) if path.is_file() else None
    tuned: dict[str, Any] = existing if isinstance(existing, dict) else {}
    lines = [
        f"# Written by `make tune` on {pd.Timestamp.now('UTC'):%Y-%m-%d %H:%M} UTC; merged over",
        "# params.yaml (its `include`). Empty it ({}) to train with the values in params.yaml.",
        f"# {report['metric']} on the validation window from {report['validation_from'][:10]}"
        f" ({report['validation_users']:,} warm users), settings in use -> best:",
    ]
    for name, result in report["models"].items():
        if "best" not in result:
            lines.append(f"#   {name}: not tuned ({result['skipped']})")
            continue
        lines.append(
            f"#   {name}: {result['current']:.4f} -> {result['best']:.4f} "
            f"({result['trials']} trials, {result['seconds']:.0f}s)"
        )
        matrix = {key: _round(value) for key, value in result["matrix"].items()}
        matrix.pop("event_weights")
        tuned = merge_params(
            tuned,
            {
                "model": {name: {key: _round(value) for key, value in result["model"].items()}},
                "matrix": {"per_model": {name: matrix}},
            },
        )
    if "include" in params and TUNED_PARAMS not in (params.get("include") or []):
        print(f"note: params.yaml does not include {TUNED_PARAMS}: the pipeline ignores it")
    text = "\n".join(lines) + "\n" + yaml.safe_dump(tuned, sort_keys=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def _round(value: Any) -> Any:
    """Floats to 4 significant digits: the file is read by people, the search is not exact."""
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return float(f"{value:.4g}")
    return value


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _flat(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {f"{prefix}.{key}": value for key, value in values.items() if key != "event_weights"}

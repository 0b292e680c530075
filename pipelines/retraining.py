"""Scheduled retraining: run the training pipeline only when the experiment's data changed.

A recurring run (`state pipeline schedule --cron`, or manifests/recurring-run.yaml) starts this pipeline;
the freshness check compares the data fingerprint with the one recorded next to the serving model (the
fingerprint that model was trained on), so a nightly schedule costs two small pods on nights without new data.

    fingerprint ─ changed? ── training pipeline (fingerprint, split ... gate ... publish)

Every training parameter is a retraining parameter too (same table, passed on by name).
"""

# No `from __future__ import annotations`: KFP reads the parameter types from real annotations.

from kfp import dsl

from components.fingerprint import fingerprint_data
from components.freshness import data_changed
from pipelines import resources as sizes
from pipelines.parameters import RETRAINING, TRAINING, names, pipeline_function
from pipelines.settings import PipelineSettings, step
from pipelines.training import build_training_pipeline

PIPELINE_NAME = "state-retrain"


def build_retraining_pipeline(settings: PipelineSettings | None = None):
    """The scheduled-retraining pipeline for one compile-time setting (image)."""
    settings = settings or PipelineSettings()
    training = build_training_pipeline(settings)

    def state_retrain(**p):
        fingerprint = step(
            fingerprint_data(experiment_toml=p["experiment_toml"]),
            settings,
            "data fingerprint",
            cache=False,
            resources=sizes.SMALL,
        )
        check = step(
            data_changed(
                data_fingerprint=fingerprint.output,
                model_repository=p["model_repository"],
                model_name=p["model_name"],
                force=p["force"],
            ),
            settings,
            "data changed?",
            cache=False,
            resources=sizes.SMALL,
        )
        with dsl.If(check.output == True, name="retrain"):  # noqa: E712 - a KFP condition, not Python
            training(**{name: p[name] for name in names(TRAINING)})

    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="Retrain and republish the State Transition model when its "
        "training data has changed (for recurring runs).",
    )(
        pipeline_function(
            "Retrain when the data changed since the serving model was trained.", RETRAINING, state_retrain
        )
    )

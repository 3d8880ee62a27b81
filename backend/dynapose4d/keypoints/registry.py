"""Keypoint estimators by name, for the pipeline, the CLI and the server.

A plain dict: adding an estimator means importing its class here and adding one line.
"""

from __future__ import annotations

from .base import KeypointError, KeypointEstimator
from .hybrid import CapeTrackerEstimator
from .poseanything.estimator import PoseAnythingEstimator
from .tracker import LKTracker, StaticEstimator

DEFAULT_ESTIMATOR = LKTracker.name

ESTIMATORS: dict[str, type[KeypointEstimator]] = {
    LKTracker.name: LKTracker,
    StaticEstimator.name: StaticEstimator,
    PoseAnythingEstimator.name: PoseAnythingEstimator,
    CapeTrackerEstimator.name: CapeTrackerEstimator,
}


def make_estimator(name: str = DEFAULT_ESTIMATOR, **config) -> KeypointEstimator:
    """The estimator registered as ``name``, constructed with ``config`` (its constructor arguments)."""
    try:
        cls = ESTIMATORS[name]
    except KeyError:
        choices = ", ".join(sorted(ESTIMATORS))
        raise KeypointError(f"unknown keypoint estimator {name!r}; choose one of: {choices}") from None
    return cls(**config)


def job_estimator(name: str, *, weights: str = "", device: str = "auto") -> KeypointEstimator:
    """The estimator a job chooses: ``name``, and for those that load weights the ``weights``
    folder ('' = the default location) and the job's ``device``."""
    cls = ESTIMATORS.get(name)
    if cls is not None and cls.needs_weights:
        return make_estimator(name, weights=weights or None, device=device)
    return make_estimator(name)

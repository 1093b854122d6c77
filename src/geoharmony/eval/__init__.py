"""Evaluation: feature extraction, linear probe, kNN, group and geometry metrics, reports."""

from geoharmony.eval.features import NonFiniteFeaturesError, extract_features, to_unit_float
from geoharmony.eval.geometry import (
    alignment,
    class_mean_cosines,
    class_means,
    cosine_summary,
    effective_rank,
    etf_deviation,
    prior_agreement,
    uniformity,
)
from geoharmony.eval.knn import knn_predict
from geoharmony.eval.linear_probe import (
    PRESETS,
    LinearProbe,
    ProbeSettings,
    get_probe_settings,
    predict,
    train_linear_probe,
)
from geoharmony.eval.metrics import (
    FEW,
    GROUP_NAMES,
    MANY,
    MEDIUM,
    class_groups,
    group_metrics,
    per_class_accuracy,
)
from geoharmony.eval.results import (
    SCHEMA_KEYS,
    assemble_result,
    result_from_predictions,
    write_json,
)

__all__ = [
    "FEW",
    "GROUP_NAMES",
    "MANY",
    "MEDIUM",
    "PRESETS",
    "SCHEMA_KEYS",
    "LinearProbe",
    "NonFiniteFeaturesError",
    "ProbeSettings",
    "alignment",
    "assemble_result",
    "class_groups",
    "class_mean_cosines",
    "class_means",
    "cosine_summary",
    "effective_rank",
    "etf_deviation",
    "extract_features",
    "get_probe_settings",
    "group_metrics",
    "knn_predict",
    "per_class_accuracy",
    "predict",
    "prior_agreement",
    "result_from_predictions",
    "to_unit_float",
    "train_linear_probe",
    "uniformity",
    "write_json",
]

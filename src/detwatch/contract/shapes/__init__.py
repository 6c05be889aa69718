"""The ``/v1`` wire format, declared once: the request and response shape of every route.

Each shape is a ``TypedDict`` whose fields carry their bounds (``Annotated[...,
msgspec.Meta(...)]``). Four parties read them:

- the server's validation: every request body is checked against its shape
  (:func:`detwatch.contract.shapes.conform.conform`) before the rules a shape cannot
  say; prediction events, on the ingest path, are decoded by their own msgspec structs,
  which ``tests/test_contract_agreement.py`` holds to the shape;
- the OpenAPI document (:mod:`detwatch.api.openapi`), whose ``components.schemas`` are
  :func:`schema_components` of :data:`SHAPES`;
- the routes, which build their answers as these shapes;
- the client (:mod:`detwatch.client`), whose calls return them (``TypedDict`` values are
  plain dictionaries at runtime).

What a ``TypedDict`` cannot say (a closed object, a rule across fields) each module
declares in its ``CROSS_FIELD`` table, merged into the shape's schema here. Text rules
JSON Schema cannot say alone stay in :mod:`detwatch.contract.textfields`.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from detwatch.contract.shapes import _common, abtests, alerts, drift, feedback, ingest, label_studio, review
from detwatch.contract.shapes._common import MAX_BATCH, Error, ErrorDetail, RejectedItem
from detwatch.contract.shapes.abtests import ABTest, ABTestCreate, ABTestList, ABTestResults
from detwatch.contract.shapes.alerts import Alert, AlertArtifacts, AlertCreate, AlertCreated, AlertList
from detwatch.contract.shapes.drift import DriftReport, DriftRequest
from detwatch.contract.shapes.feedback import Feedback, FeedbackBatch, FeedbackBatchResult, FeedbackRecord
from detwatch.contract.shapes.images import ImageLocation
from detwatch.contract.shapes.ingest import Detection, Prediction, PredictionBatch, PredictionResult
from detwatch.contract.shapes.label_studio import (
    LabelStudioImport,
    LabelStudioImportResult,
    LabelStudioTaskPage,
    LabelStudioWebhook,
    LabelStudioWebhookResult,
)
from detwatch.contract.shapes.quality import QualityReport
from detwatch.contract.shapes.quality_comparison import VersionComparisonReport
from detwatch.contract.shapes.registry import (
    Dataset,
    DatasetCreate,
    DatasetVersion,
    DatasetVersionCreate,
    Model,
    ModelList,
    ModelRegistration,
    ReviewProgress,
    Status,
)
from detwatch.contract.shapes.review import (
    CandidatePredictions,
    CandidateResult,
    Claim,
    DataEngine,
    DataEngineConfig,
    FlaggedItem,
    FlaggedItemPage,
    Label,
    Reject,
    TrainingGate,
    TrainingJob,
    TrainingJobCreate,
    TrainingJobStatus,
)

__all__ = [
    "MAX_BATCH",
    "REF_PREFIX",
    "SHAPES",
    "ABTest",
    "ABTestCreate",
    "ABTestList",
    "ABTestResults",
    "Alert",
    "AlertArtifacts",
    "AlertCreate",
    "AlertCreated",
    "AlertList",
    "CandidatePredictions",
    "CandidateResult",
    "Claim",
    "DataEngine",
    "DataEngineConfig",
    "Dataset",
    "DatasetCreate",
    "DatasetVersion",
    "DatasetVersionCreate",
    "Detection",
    "DriftReport",
    "DriftRequest",
    "Error",
    "ErrorDetail",
    "Feedback",
    "FeedbackBatch",
    "FeedbackBatchResult",
    "FeedbackRecord",
    "FlaggedItem",
    "FlaggedItemPage",
    "ImageLocation",
    "Label",
    "LabelStudioImport",
    "LabelStudioImportResult",
    "LabelStudioTaskPage",
    "LabelStudioWebhook",
    "LabelStudioWebhookResult",
    "Model",
    "ModelList",
    "ModelRegistration",
    "Prediction",
    "PredictionBatch",
    "PredictionResult",
    "QualityReport",
    "Reject",
    "RejectedItem",
    "ReviewProgress",
    "Status",
    "TrainingGate",
    "TrainingJob",
    "TrainingJobCreate",
    "TrainingJobStatus",
    "VersionComparisonReport",
    "schema_components",
]

REF_PREFIX: Final = "#/components/schemas/"

SHAPES: Final[tuple[Any, ...]] = (
    Error,
    PredictionBatch,
    PredictionResult,
    Feedback,
    FeedbackBatch,
    FeedbackRecord,
    FeedbackBatchResult,
    ModelRegistration,
    Model,
    ModelList,
    DatasetCreate,
    DatasetVersionCreate,
    DatasetVersion,
    Dataset,
    DriftRequest,
    DriftReport,
    ABTestCreate,
    ABTest,
    ABTestList,
    ABTestResults,
    Status,
    DataEngineConfig,
    DataEngine,
    FlaggedItem,
    FlaggedItemPage,
    Claim,
    Label,
    Reject,
    TrainingJobCreate,
    TrainingJob,
    TrainingJobStatus,
    CandidatePredictions,
    CandidateResult,
    AlertCreate,
    AlertCreated,
    AlertList,
    AlertArtifacts,
    ImageLocation,
    LabelStudioTaskPage,
    LabelStudioImport,
    LabelStudioImportResult,
    LabelStudioWebhook,
    LabelStudioWebhookResult,
    QualityReport,
    VersionComparisonReport,
)
"""Every shape a route reads or answers (the shapes they contain come along)."""

_CROSS_FIELD: Final[dict[str, dict[str, Any]]] = {
    **_common.CROSS_FIELD,
    **ingest.CROSS_FIELD,
    **feedback.CROSS_FIELD,
    **drift.CROSS_FIELD,
    **abtests.CROSS_FIELD,
    **alerts.CROSS_FIELD,
    **review.CROSS_FIELD,
    **label_studio.CROSS_FIELD,
}


def schema_components() -> dict[str, Any]:
    """JSON Schema of every shape, by name, with ``$ref`` s into ``#/components/schemas`` (a new dict each call).

    msgspec's ``title`` is dropped (the name is the key); a shape's docstring is its description.
    """
    _, components = msgspec.json.schema_components(SHAPES, ref_template=REF_PREFIX + "{name}")
    for name, schema in components.items():
        schema.pop("title", None)
        if "description" in schema:  # a docstring, wrapped for the source: one paragraph on the wire
            schema["description"] = " ".join(schema["description"].split())
        if schema.get("required") == []:
            del schema["required"]
        schema.update(_CROSS_FIELD.get(name, {}))
    unknown = _CROSS_FIELD.keys() - components.keys()
    assert not unknown, f"CROSS_FIELD names no shape: {sorted(unknown)}"
    return dict(components)

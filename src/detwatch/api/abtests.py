"""A/B tests: ``/v1/ab-tests`` to create, list, poll (what a router reads), stop, and read results.

The analysis is :mod:`detwatch.abtest`; this module only reads requests and writes answers.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify

from detwatch.abtest import service as abtest_service
from detwatch.api._analysis_json import ab_results_json
from detwatch.api._context import get_storage
from detwatch.api._request import check_shape, nul_free_body, require_token
from detwatch.api.errors import APIError
from detwatch.contract.shapes import ABTestCreate
from detwatch.storage import ABTestRecord, Storage

__all__ = ["bp"]

bp = Blueprint("abtests", __name__, url_prefix="/v1")
bp.before_request(require_token)


def _ab_test_or_404(storage: Storage, ab_test_id: str) -> ABTestRecord:
    record = storage.get_ab_test(ab_test_id)
    if record is None:
        raise APIError(404, "ab_test_not_found", f"no A/B test {ab_test_id!r}", "ab_test_id")
    return record


_AB_TEST_FIELDS = ("name", "model_a_id", "model_b_id", "start", "config")


@bp.post("/ab-tests")
def create_ab_test() -> tuple[Response, int]:
    body = nul_free_body(*_AB_TEST_FIELDS)
    check_shape(body, ABTestCreate)  # types and bounds; the analysis reads the arms, the metrics and the start
    try:
        record = abtest_service.create_for_request(get_storage(), body)
    except abtest_service.ABTestInputError as exc:
        raise APIError(exc.status, "invalid_field", exc.message, exc.field) from None
    return jsonify(abtest_service.test_json(record)), 201


@bp.get("/ab-tests")
def list_ab_tests() -> Response:
    return jsonify({"ab_tests": [abtest_service.test_json(t) for t in get_storage().list_ab_tests()]})


@bp.get("/ab-tests/<ab_test_id>")
def get_ab_test(ab_test_id: str) -> Response:
    return jsonify(abtest_service.test_json(_ab_test_or_404(get_storage(), ab_test_id)))


@bp.post("/ab-tests/<ab_test_id>/stop")
def stop_ab_test(ab_test_id: str) -> Response:
    storage = get_storage()
    record = _ab_test_or_404(storage, ab_test_id)
    if record.status == "running":
        storage.set_ab_test_status(ab_test_id, "stopped", min(record.end_unix_nano, time.time_ns()))
    return jsonify(abtest_service.test_json(_ab_test_or_404(storage, ab_test_id)))


@bp.get("/ab-tests/<ab_test_id>/results")
def get_ab_test_results(ab_test_id: str) -> Response:
    storage = get_storage()
    return jsonify(ab_results_json(abtest_service.results_for(storage, _ab_test_or_404(storage, ab_test_id))))

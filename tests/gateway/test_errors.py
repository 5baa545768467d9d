"""gRPC statuses map to HTTP in one place: 422 naming the field, 404, 409, 429, 503, 502."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.gateway.errors import camel, grpc_error_response


def rpc_error(
    code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, str | bytes], ...] = ()
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details=details, debug_error_string=""
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.FAILED_PRECONDITION, 409),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 503),
        (grpc.StatusCode.INTERNAL, 502),
        (grpc.StatusCode.UNKNOWN, 502),
    ],
)
def test_codes_map_to_statuses_with_a_json_body(code: grpc.StatusCode, status: int) -> None:
    response = grpc_error_response(rpc_error(code, "cannot start job 'x': it is completed"), service="jobs")

    assert response.status_code == status
    assert "detail" in json.loads(bytes(response.body))


def test_invalid_argument_is_422_naming_the_field_in_camel_case() -> None:
    violation = error_details_pb2.BadRequest.FieldViolation(field="user_id", description="must be 1-128 characters")
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="user_id: must be 1-128 characters", details=[detail])
    )

    response = grpc_error_response(
        rpc_error(grpc.StatusCode.INVALID_ARGUMENT, status.details, status.trailing_metadata), service="jobs"
    )

    assert response.status_code == 422
    assert json.loads(bytes(response.body)) == {
        "detail": [{"loc": ["body", "userId"], "msg": "must be 1-128 characters", "type": "value_error"}]
    }


@pytest.mark.parametrize(
    ("snake", "camel_case"),
    [("user_id", "userId"), ("max_retries", "maxRetries"), ("metadata.provider", "metadata.provider")],
)
def test_field_names_become_camel_case(snake: str, camel_case: str) -> None:
    assert camel(snake) == camel_case

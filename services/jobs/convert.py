"""Small conversions between the jobs service's rows and its protobuf messages, shared by its RPCs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from services.core.errors import InvalidArgument

Value = TypeVar("Value")


def timestamp(value: datetime | None) -> Timestamp | None:
    """The protobuf Timestamp of an optional datetime."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def enum_filter(number: int, from_proto: Mapping[int, Value], *, field: str, noun: str) -> Value | None:
    """A filter from a proto enum: None for its UNSPECIFIED (0, any), INVALID_ARGUMENT naming the
    field for a number the enum does not have."""
    if number == 0:
        return None
    value = from_proto.get(number)
    if value is None:
        raise InvalidArgument(field, f"unknown {noun} {number}")
    return value

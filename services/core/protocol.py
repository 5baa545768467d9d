"""gRPC metadata names that the services and their clients share, beside the protos."""

from __future__ import annotations

# On a CreateJob answered from an earlier request with the same idempotency key.
REPLAYED_HEADER = "idempotent-replayed"

"""GrpcClient: JobService and ProviderService over gRPC (the `grpc` extra: pip install ./gen
'./clients/python[grpc]'). Answers are the generated protobuf messages (videogen.v1)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import grpc

from videogen.v1 import jobs_pb2, jobs_pb2_grpc, providers_pb2, providers_pb2_grpc

DEFAULT_TARGET = "localhost:8000"


class GrpcClient:
    """The public gRPC services through the edge (h2c, or TLS with `secure=True`), the API key as
    `x-api-key` metadata (VIDEOGEN_API_KEY when not given), a deadline on every unary call."""

    def __init__(
        self,
        target: str | None = None,
        *,
        api_key: str | None = None,
        secure: bool = False,
        timeout: float = 30.0,
    ) -> None:
        target = target or os.environ.get("VIDEOGEN_GRPC_TARGET") or DEFAULT_TARGET
        self._channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials()) if secure else grpc.insecure_channel(target)
        )
        key = api_key if api_key is not None else os.environ.get("VIDEOGEN_API_KEY")
        self._metadata: tuple[tuple[str, str], ...] = (("x-api-key", key),) if key else ()
        self._timeout = timeout
        self.jobs = jobs_pb2_grpc.JobServiceStub(self._channel)
        self.providers_stub = providers_pb2_grpc.ProviderServiceStub(self._channel)

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def create_job(
        self,
        prompt: str,
        *,
        user_id: str = "",
        metadata: dict[str, Any] | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
    ) -> jobs_pb2.Job:
        """CreateJob, with an idempotency key (a new one unless given)."""
        request = jobs_pb2.CreateJobRequest(
            user_id=user_id,
            prompt=prompt,
            metadata_json=json.dumps(metadata or {}),
            idempotency_key=idempotency_key or uuid.uuid4().hex,
        )
        if max_retries is not None:
            request.max_retries = max_retries
        job: jobs_pb2.Job = self.jobs.CreateJob(request, timeout=self._timeout, metadata=self._metadata)
        return job

    def get_job(self, job_id: str) -> jobs_pb2.Job:
        job: jobs_pb2.Job = self.jobs.GetJob(
            jobs_pb2.GetJobRequest(id=job_id), timeout=self._timeout, metadata=self._metadata
        )
        return job

    def cancel_job(self, job_id: str) -> jobs_pb2.Job:
        job: jobs_pb2.Job = self.jobs.CancelJob(
            jobs_pb2.CancelJobRequest(id=job_id), timeout=self._timeout, metadata=self._metadata
        )
        return job

    def watch(self, job_id: str) -> Iterator[jobs_pb2.JobEvent]:
        """WatchJob: the job's events to its final one (keep-alives left out)."""
        for event in self.jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job_id), metadata=self._metadata):
            if event.type != "job.keepalive":
                yield event

    def providers(self) -> providers_pb2.GetProvidersStatusResponse:
        reply: providers_pb2.GetProvidersStatusResponse = self.providers_stub.GetProvidersStatus(
            providers_pb2.GetProvidersStatusRequest(), timeout=self._timeout, metadata=self._metadata
        )
        return reply

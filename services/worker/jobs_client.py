"""The worker's side of the job lifecycle: a typed JobLifecycleService client with one refusal rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from services.core.logging import get_logger
from services.worker.internal import InternalClient
from videogen.v1 import jobs_pb2, lifecycle_pb2, lifecycle_pb2_grpc

log = get_logger(__name__)
Request = TypeVar("Request", bound=Message)

# The codes with which the jobs service refuses a call for an attempt that is no longer the job's
# (cancelled, finished, handed to another attempt, deleted): the worker skips or stops, never retries.
REFUSALS = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND})


class Refused(Exception):
    """The jobs service refused the call: the job is not (or no longer) this attempt's."""

    def __init__(self, rpc: str, code: grpc.StatusCode, details: str | None) -> None:
        super().__init__(f"{rpc}: {code.name}: {details or ''}")
        self.rpc = rpc
        self.code = code
        self.details = details


class JobsUnavailable(Exception):
    """The jobs service did not answer; the message should be tried again later."""


class JobsClient(InternalClient[lifecycle_pb2_grpc.JobLifecycleServiceStub]):
    """A JobLifecycleService client for one attempt's calls: credentials, request id and deadline
    on every call, and a refusal (REFUSALS) raised as Refused by every method."""

    def start(
        self, job_id: str, *, attempt: int, worker_id: str, request_id: str | None, resumes: Sequence[str] = ()
    ) -> jobs_pb2.Job:
        """QUEUED -> PROCESSING for this attempt (or the attempt an earlier delivery of the
        message, in resumes, started and gave up on): the job to work on; Refused (skip the
        message) or JobsUnavailable (try the message again later) otherwise."""
        request = lifecycle_pb2.StartJobRequest(
            id=job_id, worker_id=worker_id, attempt=attempt, resumes_worker_ids=list(resumes)
        )

        def call() -> jobs_pb2.Job:
            return self._call(self._stub.StartJob, request, request_id)

        try:
            return call()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise JobsUnavailable(f"StartJob: {exc.code().name}") from exc
        # The start may have landed and its answer been lost (a frozen or failing-over service):
        # asked again by this worker, it answers the attempt it started, which only this worker
        # would otherwise leave to the reaper (a burned attempt).
        try:
            return self._patiently(call, rpc="StartJob", job_id=job_id)
        except grpc.RpcError as exc:
            raise JobsUnavailable(f"StartJob: {exc.code().name}") from exc

    def report_progress(
        self,
        job_id: str,
        *,
        attempt: int,
        percent: int,
        stage: str,
        request_id: str | None,
        timeout: float | None = None,
    ) -> bool:
        """Reports the attempt's progress (its heartbeat too): True once the jobs service took it,
        Refused once the job is not ours. Any other error is logged and left (False): the next
        report or the heartbeat tries again. timeout shortens the deadline (never lengthens it)."""
        request = lifecycle_pb2.ReportProgressRequest(id=job_id, percent=percent, stage=stage, attempt=attempt)
        try:
            self._call(self._stub.ReportProgress, request, request_id, timeout=timeout)
        except grpc.RpcError as exc:
            log.warning("job.progress_unreported", job_id=job_id, error=exc.code().name, details=exc.details())
            return False
        return True

    def record_provider_task(
        self, job_id: str, *, attempt: int, provider: str, task_id: str, request_id: str | None
    ) -> None:
        """Records the provider task the attempt started, so that a later attempt can cancel it;
        Refused once the job is not ours. Any other error is logged and left."""
        request = lifecycle_pb2.RecordProviderTaskRequest(
            id=job_id, attempt=attempt, provider=provider, task_id=task_id[:255]
        )
        try:
            self._call(self._stub.RecordProviderTask, request, request_id)
        except grpc.RpcError as exc:
            log.warning("job.provider_task_unrecorded", job_id=job_id, error=exc.code().name)

    def complete(
        self,
        job_id: str,
        *,
        attempt: int,
        result: jobs_pb2.VideoResult,
        provider: str,
        model: str,
        generation_time_ms: int,
        cost_usd: float,
        request_id: str | None,
    ) -> None:
        """PROCESSING -> COMPLETED with the stored video, asked again through an outage (a replay
        of a completion that landed is answered as it was); Refused, or the grpc.RpcError."""
        request = lifecycle_pb2.CompleteJobRequest(
            id=job_id,
            result=result,
            used_provider=provider,
            used_model=model,
            generation_time_ms=generation_time_ms,
            attempt=attempt,
            cost_usd=cost_usd,
        )
        self._patiently(
            lambda: self._call(self._stub.CompleteJob, request, request_id), rpc="CompleteJob", job_id=job_id
        )

    def fail(self, job_id: str, *, attempt: int, error: str, provider: str, request_id: str | None) -> None:
        """PROCESSING -> FAILED, naming the provider that failed if any, asked again through an
        outage; Refused, or the grpc.RpcError."""
        request = lifecycle_pb2.FailJobRequest(id=job_id, error_message=error, attempt=attempt)
        if provider:
            request.used_provider = provider[:64]
        self._patiently(lambda: self._call(self._stub.FailJob, request, request_id), rpc="FailJob", job_id=job_id)

    def retry(self, job_id: str, *, attempt: int, error: str, delay: float, request_id: str | None) -> None:
        """PROCESSING -> QUEUED for another attempt after delay seconds, asked again through an
        outage; Refused, or the grpc.RpcError."""
        request = lifecycle_pb2.RetryJobRequest(
            id=job_id, error_message=error, retry_after_seconds=delay, attempt=attempt
        )
        self._patiently(lambda: self._call(self._stub.RetryJob, request, request_id), rpc="RetryJob", job_id=job_id)

    def _call(
        self,
        method: grpc.UnaryUnaryMultiCallable[Request, jobs_pb2.Job],
        request: Request,
        request_id: str | None,
        *,
        timeout: float | None = None,
    ) -> jobs_pb2.Job:
        """One call with the credential, the request id and the deadline (the shorter of timeout
        and the client's); a refusal raised as Refused."""
        deadline = self._timeout if timeout is None else min(timeout, self._timeout)
        try:
            return method(request, timeout=deadline, metadata=self._metadata(request_id))
        except grpc.RpcError as exc:
            if exc.code() in REFUSALS:
                rpc = type(request).DESCRIPTOR.name.removesuffix("Request")
                raise Refused(rpc, exc.code(), exc.details()) from exc
            raise

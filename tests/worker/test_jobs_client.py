"""The worker's jobs client against a real gRPC server: which answers are refusals, which errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf.message import Message
from structlog.testing import capture_logs

from services.core.generators.base import JobCancelled
from services.worker.jobs_client import JobsClient, JobsUnavailable, Refused
from services.worker.liveness import Liveness
from videogen.v1 import jobs_pb2, lifecycle_pb2, lifecycle_pb2_grpc

CREDENTIALS = (("authorization", "Bearer the-service-token"),)
REFUSALS = [grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND]
ERRORS = [
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INVALID_ARGUMENT,
]


@dataclass
class Call:
    """One call the fake jobs service got."""

    rpc: str
    request: Message
    metadata: dict[str, str]
    deadline: float | None


@dataclass
class FakeLifecycle(lifecycle_pb2_grpc.JobLifecycleServiceServicer):
    """Answers every call the worker makes with the job, or aborts with `code` when one is set."""

    code: grpc.StatusCode | None = None
    # When set, only this many next calls are aborted with `code` (an outage that ends).
    failures_left: int | None = None
    port: int = 0
    calls: list[Call] = field(default_factory=list)

    def answer(self, rpc: str, request: Message, context: grpc.ServicerContext) -> jobs_pb2.Job:
        metadata = {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}
        self.calls.append(Call(rpc, request, metadata, context.time_remaining()))
        if self.code is not None and self.failures_left != 0:
            if self.failures_left is not None:
                self.failures_left -= 1
            context.abort(self.code, f"{rpc} says {self.code.name}")
        return jobs_pb2.Job(id=getattr(request, "id", ""), status=jobs_pb2.JOB_STATUS_PROCESSING)

    def StartJob(self, request: lifecycle_pb2.StartJobRequest, context: grpc.ServicerContext) -> jobs_pb2.Job:
        return self.answer("StartJob", request, context)

    def ReportProgress(
        self, request: lifecycle_pb2.ReportProgressRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.Job:
        return self.answer("ReportProgress", request, context)

    def CompleteJob(self, request: lifecycle_pb2.CompleteJobRequest, context: grpc.ServicerContext) -> jobs_pb2.Job:
        return self.answer("CompleteJob", request, context)

    def FailJob(self, request: lifecycle_pb2.FailJobRequest, context: grpc.ServicerContext) -> jobs_pb2.Job:
        return self.answer("FailJob", request, context)

    def RetryJob(self, request: lifecycle_pb2.RetryJobRequest, context: grpc.ServicerContext) -> jobs_pb2.Job:
        return self.answer("RetryJob", request, context)

    def RecordProviderTask(
        self, request: lifecycle_pb2.RecordProviderTaskRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.Job:
        return self.answer("RecordProviderTask", request, context)


@pytest.fixture
def service() -> Iterator[FakeLifecycle]:
    fake = FakeLifecycle()  # type: ignore[abstract]  # the worker never records telemetry
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    lifecycle_pb2_grpc.add_JobLifecycleServiceServicer_to_server(fake, server)
    fake.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield fake
    finally:
        server.stop(None)


@pytest.fixture
def jobs(service: FakeLifecycle) -> Iterator[JobsClient]:
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        yield JobsClient(lifecycle_pb2_grpc.JobLifecycleServiceStub(channel), timeout=5, credentials=CREDENTIALS)


# Each RPC the worker makes, called as the runner calls it.
CALLS: dict[str, Callable[[JobsClient], object]] = {
    "StartJob": lambda jobs: jobs.start("job-1", attempt=2, worker_id="w/1", request_id="req-1"),
    "ReportProgress": lambda jobs: jobs.report_progress(
        "job-1", attempt=2, percent=40, stage="rendering", request_id="req-1"
    ),
    "RecordProviderTask": lambda jobs: jobs.record_provider_task(
        "job-1", attempt=2, provider="runway", task_id="task-9", request_id="req-1"
    ),
    "CompleteJob": lambda jobs: jobs.complete(
        "job-1",
        attempt=2,
        result=jobs_pb2.VideoResult(video_url="/media/job-1-2.mp4", storage_key="job-1-2.mp4"),
        provider="local",
        model="local-pyav-h264-v1",
        generation_time_ms=1200,
        cost_usd=0.25,
        request_id="req-1",
    ),
    "FailJob": lambda jobs: jobs.fail("job-1", attempt=2, error="bad", provider="runway", request_id="req-1"),
    "RetryJob": lambda jobs: jobs.retry("job-1", attempt=2, error="flaky", delay=30.0, request_id="req-1"),
}


@pytest.mark.parametrize("code", REFUSALS)
@pytest.mark.parametrize("rpc", list(CALLS))
def test_failed_precondition_and_not_found_are_refusals_of_every_call(
    service: FakeLifecycle, jobs: JobsClient, rpc: str, code: grpc.StatusCode
) -> None:
    service.code = code

    with pytest.raises(Refused) as refused:
        CALLS[rpc](jobs)

    assert (refused.value.rpc, refused.value.code, refused.value.details) == (rpc, code, f"{rpc} says {code.name}")


@pytest.mark.parametrize("code", [code for code in ERRORS if code != grpc.StatusCode.DEADLINE_EXCEEDED])
def test_any_other_error_of_start_means_the_jobs_service_is_unavailable(
    service: FakeLifecycle, jobs: JobsClient, code: grpc.StatusCode
) -> None:
    service.code = code

    with pytest.raises(JobsUnavailable, match=f"^StartJob: {code.name}$"):
        CALLS["StartJob"](jobs)


@pytest.mark.parametrize("code", ERRORS)
@pytest.mark.parametrize("rpc", ["CompleteJob", "FailJob", "RetryJob"])
def test_any_other_error_of_an_outcome_is_raised_as_the_rpc_error(
    service: FakeLifecycle, jobs: JobsClient, rpc: str, code: grpc.StatusCode
) -> None:
    service.code = code

    with pytest.raises(grpc.RpcError) as error:
        CALLS[rpc](jobs)

    assert error.value.code() == code
    assert not isinstance(error.value, Refused)


def patient(service: FakeLifecycle, channel: grpc.Channel, *, patience: float, pauses: list[float]) -> JobsClient:
    stub = lifecycle_pb2_grpc.JobLifecycleServiceStub(channel)
    return JobsClient(stub, timeout=5, credentials=CREDENTIALS, patience=patience, sleep=pauses.append)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
@pytest.mark.parametrize("rpc", ["CompleteJob", "FailJob", "RetryJob"])
def test_an_outcome_is_asked_again_through_an_outage_until_it_lands(
    service: FakeLifecycle, rpc: str, code: grpc.StatusCode
) -> None:
    service.code, service.failures_left = code, 4
    pauses: list[float] = []
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        CALLS[rpc](patient(service, channel, patience=600, pauses=pauses))

    assert [call.rpc for call in service.calls] == [rpc] * 5
    assert pauses == [0.5, 1.0, 2.0, 4.0]


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT, *REFUSALS])
def test_an_outcome_is_not_asked_again_after_an_answer_that_is_no_outage(
    service: FakeLifecycle, code: grpc.StatusCode
) -> None:
    service.code = code
    pauses: list[float] = []
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel, pytest.raises((grpc.RpcError, Refused)):
        CALLS["CompleteJob"](patient(service, channel, patience=600, pauses=pauses))

    assert (len(service.calls), pauses) == (1, [])


def test_a_start_whose_answer_was_lost_is_asked_again_by_the_same_worker(service: FakeLifecycle) -> None:
    # The deadline passed (the start may have landed): asked again, through the outage that follows.
    service.code, service.failures_left = grpc.StatusCode.DEADLINE_EXCEEDED, 1
    pauses: list[float] = []
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        job = CALLS["StartJob"](patient(service, channel, patience=600, pauses=pauses))

    assert isinstance(job, jobs_pb2.Job) and job.id == "job-1"
    assert [call.request for call in service.calls] == [service.calls[0].request] * 2
    assert service.calls[0].request == lifecycle_pb2.StartJobRequest(id="job-1", worker_id="w/1", attempt=2)
    assert pauses == []  # asked again at once: the lost answer's deadline was the wait


def test_a_start_lost_past_the_patience_leaves_the_message_for_later(service: FakeLifecycle) -> None:
    service.code = grpc.StatusCode.DEADLINE_EXCEEDED
    pauses: list[float] = []
    with (
        grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel,
        pytest.raises(JobsUnavailable, match=r"^StartJob: DEADLINE_EXCEEDED$"),
    ):
        CALLS["StartJob"](patient(service, channel, patience=1.2, pauses=pauses))

    # Once, again at once, after 0.5 s and after 1 s; the next pause (2 s) would end past the patience.
    assert (len(service.calls), pauses) == (4, [0.5, 1.0])


def test_an_outage_longer_than_the_patience_is_raised(service: FakeLifecycle) -> None:
    service.code = grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = lifecycle_pb2_grpc.JobLifecycleServiceStub(channel)
        jobs = JobsClient(stub, timeout=5, credentials=CREDENTIALS, patience=1.2)
        with pytest.raises(grpc.RpcError) as error:
            CALLS["CompleteJob"](jobs)

    # Asked at once and after 0.5 s; the next pause (1 s) would end past the patience.
    assert (error.value.code(), len(service.calls)) == (grpc.StatusCode.UNAVAILABLE, 2)


@pytest.mark.parametrize("code", ERRORS)
@pytest.mark.parametrize(
    ("rpc", "event"),
    [("ReportProgress", "job.progress_unreported"), ("RecordProviderTask", "job.provider_task_unrecorded")],
)
def test_any_other_error_of_a_report_is_logged_and_left(
    service: FakeLifecycle, jobs: JobsClient, rpc: str, event: str, code: grpc.StatusCode
) -> None:
    service.code = code

    with capture_logs() as logs:
        CALLS[rpc](jobs)

    assert [(line["event"], line["log_level"], line["error"]) for line in logs] == [(event, "warning", code.name)]


@pytest.mark.parametrize("rpc", list(CALLS))
def test_every_call_carries_the_credential_the_request_id_and_the_deadline(
    service: FakeLifecycle, jobs: JobsClient, rpc: str
) -> None:
    CALLS[rpc](jobs)

    (call,) = service.calls
    assert call.rpc == rpc
    assert call.metadata["authorization"] == "Bearer the-service-token"
    assert call.metadata["x-request-id"] == "req-1"
    assert call.deadline == pytest.approx(5, abs=1)


def test_start_answers_the_job_and_names_the_attempt_and_the_worker(service: FakeLifecycle, jobs: JobsClient) -> None:
    job = jobs.start("job-1", attempt=2, worker_id="w/1", request_id=None)

    assert (job.id, job.status) == ("job-1", jobs_pb2.JOB_STATUS_PROCESSING)
    (call,) = service.calls
    assert call.request == lifecycle_pb2.StartJobRequest(id="job-1", worker_id="w/1", attempt=2)
    assert "x-request-id" not in call.metadata


def test_fail_names_the_provider_only_when_there_is_one_and_cuts_it_to_64(
    service: FakeLifecycle, jobs: JobsClient
) -> None:
    jobs.fail("job-1", attempt=0, error="bad", provider="", request_id=None)
    jobs.fail("job-1", attempt=0, error="bad", provider="p" * 100, request_id=None)

    first, second = (call.request for call in service.calls)
    assert isinstance(first, lifecycle_pb2.FailJobRequest) and isinstance(second, lifecycle_pb2.FailJobRequest)
    assert not first.HasField("used_provider")
    assert second.used_provider == "p" * 64


def test_a_provider_task_id_is_recorded_cut_to_255(service: FakeLifecycle, jobs: JobsClient) -> None:
    jobs.record_provider_task("job-1", attempt=1, provider="runway", task_id="t" * 300, request_id=None)

    (call,) = service.calls
    assert isinstance(call.request, lifecycle_pb2.RecordProviderTaskRequest)
    assert call.request.task_id == "t" * 255


def liveness(jobs: JobsClient) -> Liveness:
    return Liveness(jobs, job_id="job-1", attempt=2, request_id="req-1", progress_interval=0)


@pytest.mark.parametrize("code", REFUSALS)
def test_a_refused_progress_stops_the_attempt(service: FakeLifecycle, jobs: JobsClient, code: grpc.StatusCode) -> None:
    attempt = liveness(jobs)
    service.code = code

    with capture_logs() as logs:
        assert attempt.send() is False

    assert attempt.stopped
    assert [(line["event"], line["reason"]) for line in logs] == [
        ("job.no_longer_ours", f"ReportProgress says {code.name}")
    ]
    with pytest.raises(JobCancelled):
        attempt.reporter()(0.5, "rendering")


def test_a_progress_the_jobs_service_missed_does_not_stop_the_attempt(service: FakeLifecycle, jobs: JobsClient) -> None:
    attempt = liveness(jobs)
    service.code = grpc.StatusCode.UNAVAILABLE

    assert attempt.send() is True
    attempt.reporter()(0.5, "rendering")

    assert not attempt.stopped


def test_a_refused_provider_task_record_stops_the_attempt_at_its_next_progress(
    service: FakeLifecycle, jobs: JobsClient
) -> None:
    attempt = liveness(jobs)
    service.code = grpc.StatusCode.FAILED_PRECONDITION

    attempt.task_recorder("runway")("task-9")

    assert attempt.stopped
    calls = len(service.calls)
    with pytest.raises(JobCancelled):
        attempt.reporter()(0.5, "rendering")
    assert len(service.calls) == calls


def test_the_render_never_waits_for_a_report_the_heartbeat_sends_and_its_refusal_stops_it(
    service: FakeLifecycle, jobs: JobsClient
) -> None:
    attempt = liveness(jobs)
    service.code = grpc.StatusCode.FAILED_PRECONDITION
    sent = threading.Event()

    with attempt.heartbeat(60, join_timeout=5):
        attempt.reporter()(0.5, "rendering")  # only asks the heartbeat thread to send
        deadline = time.monotonic() + 5
        while not attempt.stopped and time.monotonic() < deadline:
            sent.wait(0.01)
        with pytest.raises(JobCancelled):
            attempt.reporter()(0.6, "rendering")

    (call,) = service.calls
    assert call.rpc == "ReportProgress"
    assert isinstance(call.request, lifecycle_pb2.ReportProgressRequest)
    assert (call.request.percent, call.request.stage) == (50, "rendering")


def test_no_report_follows_the_attempts_outcome(service: FakeLifecycle, jobs: JobsClient) -> None:
    attempt = liveness(jobs)

    with attempt.heartbeat(0.05, join_timeout=5):
        attempt.reporter()(1.0, "done")  # asks the heartbeat thread for a report
        attempt.end_reports()  # waits for a report in flight; the outcome would go now
        reports = len(service.calls)
        time.sleep(0.3)  # six beats' time
        assert attempt.send()  # nothing sent, nothing refused

    # The outcome is the attempt's last word: a report after it would be refused and logged.
    assert len(service.calls) == reports <= 1


def test_a_deferred_stage_is_reported_once_it_lasts_a_progress_interval(
    service: FakeLifecycle, jobs: JobsClient
) -> None:
    attempt = Liveness(jobs, job_id="job-1", attempt=2, request_id="req-1", progress_interval=0.2)

    with attempt.heartbeat(60, join_timeout=5):
        deferred = time.monotonic()
        attempt.defer(99, "storing")
        deadline = time.monotonic() + 5
        while not service.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        waited = time.monotonic() - deferred
        attempt.end_reports()

    (call,) = service.calls
    assert isinstance(call.request, lifecycle_pb2.ReportProgressRequest)
    assert (call.request.percent, call.request.stage) == (99, "storing")
    assert waited >= 0.2


def test_a_deferred_stage_the_outcome_overtakes_costs_no_call(service: FakeLifecycle, jobs: JobsClient) -> None:
    attempt = Liveness(jobs, job_id="job-1", attempt=2, request_id="req-1", progress_interval=0.2)

    with attempt.heartbeat(60, join_timeout=5):
        attempt.defer(99, "storing")
        attempt.end_reports()  # the outcome goes now, before the stage was due
        time.sleep(0.4)  # twice the stage's delay

    assert service.calls == []

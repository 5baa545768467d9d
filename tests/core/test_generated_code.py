"""The generated code in gen/ is what `make proto` makes of protos/ now."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "protogen.py"), str(tmp_path)], check=True, capture_output=True
    )

    fresh, committed = _files(tmp_path / "videogen"), _files(ROOT / "gen" / "videogen")

    assert sorted(fresh) == sorted(committed), "run `make proto` and commit gen/"
    stale = [name for name in fresh if not filecmp.cmp(fresh[name], committed[name], shallow=False)]
    assert stale == [], f"stale generated files {stale}: run `make proto` and commit gen/"


def test_every_service_of_the_contract_is_defined() -> None:
    from videogen.v1 import jobs_pb2, lifecycle_pb2, providers_pb2, routing_pb2, worker_pb2

    assert set(jobs_pb2.DESCRIPTOR.services_by_name["JobService"].methods_by_name) >= {
        "CreateJob", "GetJob", "ListJobs", "CancelJob", "DeleteJob", "WatchJob", "ListJobDeliveries",
        "ListDeliveries", "Redeliver", "GetWebhookSecret", "CreateApiKey", "ListApiKeys", "DeleteApiKey",
    }  # fmt: skip
    assert set(lifecycle_pb2.DESCRIPTOR.services_by_name["JobLifecycleService"].methods_by_name) == {
        "StartJob", "ReportProgress", "RecordProviderTask", "CompleteJob", "FailJob", "RetryJob", "RecordTelemetry",
    }  # fmt: skip
    assert set(providers_pb2.DESCRIPTOR.services_by_name["ProviderService"].methods_by_name) == {
        "GetProvidersStatus", "TestProvider",
    }  # fmt: skip
    assert set(routing_pb2.DESCRIPTOR.services_by_name["ProviderRoutingService"].methods_by_name) == {
        "SelectProvider", "ReportOutcome", "SyncRouting",
    }  # fmt: skip
    assert "GetWorkerStats" in worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].methods_by_name


def test_no_worker_rpc_is_left_on_a_public_service() -> None:
    from videogen.v1 import jobs_pb2, providers_pb2

    public = {
        *jobs_pb2.DESCRIPTOR.services_by_name["JobService"].methods_by_name,
        *providers_pb2.DESCRIPTOR.services_by_name["ProviderService"].methods_by_name,
    }
    worker_rpcs = {"StartJob", "ReportProgress", "RecordProviderTask", "CompleteJob", "FailJob", "RetryJob",
                   "RecordTelemetry"}  # fmt: skip
    assert public.isdisjoint(worker_rpcs | {"SelectProvider", "ReportOutcome", "SyncRouting"})

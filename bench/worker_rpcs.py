"""The worker's RPCs, counted by the services that answer them: grpc_server_started_total of the
internal services (JobLifecycleService on jobs, ProviderRoutingService on providers), read from
each service's /metrics before and after a level."""

from __future__ import annotations

import asyncio
import urllib.request
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

# The services only a worker calls (contract.md, gRPC: the internal services).
WORKER_SERVICES = ("JobLifecycleService", "ProviderRoutingService")
STARTED = "grpc_server_started"


def started_calls(text: str) -> Counter[str]:
    """RPCs started on the worker's services, by method, from Prometheus text."""
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != STARTED:
            continue
        for sample in family.samples:
            service = sample.labels.get("grpc_service", "")
            if sample.name.endswith("_total") and service.rsplit(".", 1)[-1] in WORKER_SERVICES:
                found[sample.labels.get("grpc_method", "?")] += int(sample.value)
    return found


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        body: bytes = answer.read()
    return body.decode()


async def worker_calls(metrics_urls: list[str]) -> Counter[str]:
    """The worker's RPCs started so far, summed over the services behind metrics_urls."""
    texts = await asyncio.gather(*(asyncio.to_thread(_scrape, url) for url in metrics_urls))
    total: Counter[str] = Counter()
    for text in texts:
        total.update(started_calls(text))
    return total


def per_job(before: Counter[str], after: Counter[str], jobs: int) -> dict[str, float]:
    """The calls between two counts, by method, per job."""
    jobs = max(jobs, 1)
    return {
        method: (after[method] - before[method]) / jobs for method in sorted(after) if after[method] > before[method]
    }

"""CreateJob over gRPC through the edge, in closed loops like bench/load.py's REST levels, with the
admin key in `x-api-key` metadata (contract.md, gRPC): one HTTP/2 channel, as a gRPC client
holds, carrying every sender's calls."""

from __future__ import annotations

import asyncio
import json
import time

import grpc

from bench.load import MAX_IDS, TINY, LevelResult
from videogen.v1 import jobs_pb2, jobs_pb2_grpc

# Statuses of the gRPC level are HTTP-like, so the report reads them as the REST levels': OK is
# 200, and any other code counts as a failure.
OK = 200
TIMEOUT = 30.0


def create_job_request(label: str, n: int, users: int) -> jobs_pb2.CreateJobRequest:
    """The same tiny video as the REST levels, spread over the same users."""
    return jobs_pb2.CreateJobRequest(
        user_id=f"bench-user-{n % users}", prompt=f"bench {label} {n}", metadata_json=json.dumps(TINY)
    )


async def run_grpc_creates(
    target: str, *, api_key: str, users: int, concurrency: int, seconds: float, max_requests: int
) -> LevelResult:
    """concurrency senders calling CreateJob on target (host:port) until seconds pass."""
    result = LevelResult(name="create (gRPC)", concurrency=concurrency)
    counter = iter(range(max_requests))
    metadata = (("x-api-key", api_key),)
    deadline = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(target) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)

        async def sender() -> None:
            for n in counter:
                if time.monotonic() > deadline:
                    return
                began = time.perf_counter()
                try:
                    job = await stub.CreateJob(create_job_request("grpc", n, users), metadata=metadata, timeout=TIMEOUT)
                except grpc.aio.AioRpcError:
                    result.failures += 1
                    continue
                result.latencies.append(time.perf_counter() - began)
                result.statuses[OK] += 1
                if len(result.ids) < MAX_IDS:
                    result.ids.append(job.id)

        began = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        result.seconds = time.monotonic() - began
    return result

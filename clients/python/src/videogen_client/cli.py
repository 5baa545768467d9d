"""`videogen`: the API from a terminal (submit with a progress bar, list, get, watch, download,
cancel, providers). VIDEOGEN_URL and VIDEOGEN_API_KEY (or --url and --api-key) say where and as whom."""

from __future__ import annotations

import getpass
import json
import re
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from videogen_client.client import Client
from videogen_client.errors import JobFailed, VideoGenError
from videogen_client.models import Job, JobEvent

console = Console(stderr=True)
out = Console()
USER_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")


def _default_user() -> str | None:
    """Who the jobs are for when --user is not given: without a key (development) the local
    user's name; with one, nobody (a per-user key acts for its own user)."""
    name = getpass.getuser()
    return name if USER_ID.fullmatch(name) else None


@click.group()
@click.option("--url", envvar="VIDEOGEN_URL", default="http://localhost:8000", show_default=True, help="The API.")
@click.option("--api-key", envvar="VIDEOGEN_API_KEY", default=None, help="X-API-Key (or VIDEOGEN_API_KEY).")
@click.version_option(package_name="videogen-client")
@click.pass_context
def cli(context: click.Context, url: str, api_key: str | None) -> None:
    """Generate videos with VideoGen."""
    context.obj = Client(url, api_key=api_key or "")
    context.call_on_close(context.obj.close)


def _follow(client: Client, job: Job) -> Job:
    """A progress bar that follows the job to its end; the final job."""
    columns = (
        TextColumn("[bold]{task.fields[status]:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(job.id, total=100, status=job.status, stage="")

        def show(event: JobEvent) -> None:
            now = event.job
            percent = 100 if now.status == "completed" else now.progress_percent
            progress.update(task, completed=percent, status=now.status, stage=now.progress_stage)

        return client.wait(job.id, on_event=show, raise_on_failure=False)


@cli.command()
@click.argument("prompt")
@click.option("--user", "user_id", default=None, help="userId (default: yours without a key, the key's with one).")
@click.option("--priority", type=click.Choice(["high", "default", "low"]), default=None)
@click.option("--provider", default=None, help="metadata.provider: the provider to use.")
@click.option("--duration", type=float, default=None, help="metadata.durationSeconds.")
@click.option("--metadata", "metadata_json", default=None, help="More metadata, as a JSON object.")
@click.option("--wait/--no-wait", default=False, help="Follow the job with a progress bar and save its video.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_obj
def submit(
    client: Client,
    prompt: str,
    user_id: str | None,
    priority: str | None,
    provider: str | None,
    duration: float | None,
    metadata_json: str | None,
    wait: bool,
    output: Path | None,
) -> None:
    """Submit a job; with --wait, watch it and save the MP4."""
    try:
        metadata: dict[str, Any] = json.loads(metadata_json) if metadata_json else {}
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from None
    if not isinstance(metadata, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--metadata")
    for name, value in (("priority", priority), ("provider", provider), ("durationSeconds", duration)):
        if value is not None:
            metadata[name] = value
    if user_id is None and not client.has_key:
        user_id = _default_user()
    job = client.create_job(prompt, user_id=user_id, metadata=metadata or None)
    console.print(f"job [bold]{job.id}[/] {job.status}")
    if not wait:
        out.print(job.id)
        return
    job = _follow(client, job)
    if job.status != "completed":
        raise JobFailed(job)
    saved = client.download(job, output)
    console.print(f"saved [bold]{saved}[/] ({job.result.size_bytes if job.result else 0:,} bytes)")
    out.print(str(saved))


@cli.command(name="list")
@click.option("--user", "user_id", default=None)
@click.option("--status", type=click.Choice(["queued", "processing", "completed", "failed", "cancelled"]))
@click.option("--take", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--cursor", default=None, help="The next page: the cursor the last one printed.")
@click.pass_obj
def list_jobs(client: Client, user_id: str | None, status: str | None, take: int, cursor: str | None) -> None:
    """List jobs, newest first."""
    page = client.list_jobs(user_id=user_id, status=status, take=take, cursor=cursor)
    table = Table("id", "user", "status", "progress", "provider", "created", "prompt", title=f"{page.total} jobs")
    for job in page.jobs:
        created = job.created_at.strftime("%Y-%m-%d %H:%M:%S") if job.created_at else ""
        table.add_row(
            job.id,
            job.user_id,
            job.status,
            f"{job.progress_percent}%",
            job.used_provider or "",
            created,
            job.prompt[:40],
        )
    out.print(table)
    if page.next_cursor:
        console.print(f"next page: --cursor {page.next_cursor}")


@cli.command()
@click.argument("job_id")
@click.pass_obj
def get(client: Client, job_id: str) -> None:
    """Print a job as JSON."""
    out.print_json(data=client.get_job(job_id).raw)


@cli.command()
@click.argument("job_id")
@click.pass_obj
def watch(client: Client, job_id: str) -> None:
    """Follow a job with a progress bar until it ends."""
    job = _follow(client, client.get_job(job_id))
    if job.status != "completed":
        raise JobFailed(job)


@cli.command()
@click.argument("job_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_obj
def download(client: Client, job_id: str, output: Path | None) -> None:
    """Save a completed job's video."""
    out.print(str(client.download(job_id, output)))


@cli.command()
@click.argument("job_id")
@click.pass_obj
def cancel(client: Client, job_id: str) -> None:
    """Cancel a queued or processing job (a finished one is deleted with its video)."""
    job = client.cancel_job(job_id)
    out.print(f"{job_id} {'cancelled' if job is not None else 'deleted'}")


@cli.command()
@click.pass_obj
def providers(client: Client) -> None:
    """The providers' health, latency and cost."""
    table = Table("provider", "status", "circuit", "failures", "avg ms", "cost", "models")
    for item in client.providers():
        circuit = item.circuit
        if item.circuit == "open" and item.circuit_open_until is not None:
            circuit = f"open until {item.circuit_open_until.astimezone():%H:%M:%S}"
        table.add_row(
            item.provider,
            item.status,
            circuit,
            str(item.consecutive_failures),
            f"{item.avg_response_time_ms:.0f}",
            f"{item.cost_per_request:.2f}",
            ", ".join(item.models),
        )
    out.print(table)


def main() -> None:
    """The console script: API errors as one line and exit 1, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (VideoGenError, TimeoutError) as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(1)

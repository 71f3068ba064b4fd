"""``datamill jobs CACHE [--prefix P] [--all] [--no-refresh] [--cancel] [--resubmit-cancelled]``:
the offline batch jobs of a cache.

Jobs are read from the state database (``offline_batch_jobs``), which stores each job's
provider and base URL but never an API key. The live jobs' status is asked from the provider
(unless ``--no-refresh``) and ``--cancel`` cancels them, with the key from the environment
(``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY``, or the variable named by ``--api-key-env``).
Cancelled jobs are collected by the next run, which keeps what they answered and holds their
unanswered requests (their rows fail, saying so) until ``--resubmit-cancelled`` puts them back
for the next run to send. Takes no lock: safe while a run is polling.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import typer

from datamill.cli.app import app
from datamill.cli.boundary import DEBUG_HELP, guarded

PREFIX_HELP = "file_name_prefix of the cache; needed only when CACHE holds several."
LIVE_STATES = ("intent", "uploaded", "creating", "submitted")


@app.command("jobs")
@guarded
def jobs_command(
    cache: Path = typer.Argument(..., help="The pipeline's cache_path directory."),
    prefix: str | None = typer.Option(None, "--prefix", help=PREFIX_HELP),
    show_all: bool = typer.Option(False, "--all", help="Also list jobs already collected."),
    refresh: bool = typer.Option(
        True, "--refresh/--no-refresh", help="Ask the provider for each live job's current status."
    ),
    cancel: bool = typer.Option(False, "--cancel", help="Cancel every job that is still running."),
    resubmit_cancelled: bool = typer.Option(
        False,
        "--resubmit-cancelled",
        help="Let the next run send again the requests that cancelled jobs left unanswered.",
    ),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", metavar="NAME", help="Environment variable holding the API key."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the jobs as one JSON array."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """List the offline batch jobs of a cache with their status and counts; --cancel cancels them."""
    from datamill.cli.cachedir import locate_cache
    from datamill.cli.consoles import stderr_console, stdout_console
    from datamill.errors import DatamillError
    from datamill.serving.offline.store import OfflineStore
    from datamill.ui.tables import WIDE_COLUMNS, records_table

    found = locate_cache(cache, prefix)
    released = _release_cancelled(found) if resubmit_cancelled else 0
    store = OfflineStore.open_readonly(found.state_path)
    try:
        chunks = store.chunks()
    finally:
        store.close()
    if resubmit_cancelled:
        typer.echo(f"{released} request(s) of cancelled jobs will be sent again by the next run", err=True)
    live = [c for c in chunks if c.state in LIVE_STATES]
    shown = chunks if show_all else live
    records = [_record(chunk.as_job_dict()) for chunk in shown]
    console = stdout_console()
    if (refresh or cancel) and live:
        try:
            updates = asyncio.run(_talk([c.as_job_dict() for c in live], cancel=cancel, key_env=api_key_env))
        except DatamillError as exc:
            if cancel:
                raise
            stderr_console().print(
                f"[yellow]could not reach the provider ({exc}); showing the recorded status[/yellow]"
            )
            updates = {}
        for record in records:
            if record["job"] in updates:
                record.update(updates[record["job"]])
    if as_json:
        import json

        typer.echo(json.dumps(records, default=str))
        return
    if not records:
        console.print(
            "no offline batch jobs are running" + ("" if show_all else " (--all lists collected ones)")
        )
        return
    title = "offline batch jobs" + (" (cancel requested)" if cancel else "")
    if console.width < WIDE_COLUMNS:  # the job id stays whole; the URL is in --json
        records = [{k: v for k, v in record.items() if k != "base_url"} for record in records]
    console.print(records_table(records, title=title))


def _record(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "step": job["step"],
        "provider": job["provider"],
        "job": job["job_id"] or f"(chunk {job['chunk_id'][:12]}, not created yet)",
        "status": job["status"],
        "requests": job["total"],
        "completed": job["completed"],
        "failed": job["failed"],
        "base_url": job["base_url"],
    }


async def _talk(
    jobs: list[dict[str, Any]], *, cancel: bool, key_env: str | None
) -> dict[str, dict[str, Any]]:
    from datamill.serving.registry import batch_provider_for_record
    from datamill.serving.registry import key_env as provider_key_env

    updates: dict[str, dict[str, Any]] = {}
    providers: dict[tuple[str, str], Any] = {}
    try:
        for job in jobs:
            if not job["job_id"]:
                continue
            where = (job["provider"], job["base_url"])
            if where not in providers:
                key = os.environ.get(key_env or provider_key_env(job["provider"]))
                providers[where] = batch_provider_for_record(job["provider"], job["base_url"], key)
            provider = providers[where]
            info = await (provider.cancel_job(job["job_id"]) if cancel else provider.get_job(job["job_id"]))
            updates[job["job_id"]] = {
                "status": info.status,
                "completed": info.completed,
                "failed": info.failed,
            }
    finally:
        for provider in providers.values():
            await provider.close()
    return updates


def _release_cancelled(found: Any) -> int:
    """Write, outside a run: take the cache lock so no run writes meanwhile."""
    from datamill.core.lock import CacheLock
    from datamill.core.state import StateDB
    from datamill.serving.offline.store import OfflineStore

    with CacheLock(found.lock_path):
        db = StateDB(found.state_path)
        try:
            return OfflineStore.open_outside_a_run(db).release_cancelled()
        finally:
            db.close()

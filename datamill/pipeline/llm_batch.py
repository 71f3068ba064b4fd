"""Computing one batch of an LLM operator: requests out through the dispatcher, outcomes back.

Each row's requests are submitted at once (the dispatcher answers from the cache, joins an
identical request in flight, or sends), so many batches can be in flight together; a batch
resolves when all its rows' responses are in. A request that failed after retries fails its
row — recorded, never written as ``null``. A reply that fails the operator's validation is
asked again with a salted request, up to a bound (see ``compute_llm_batch``).
"""

from __future__ import annotations

import asyncio

from datamill.errors import InvalidResponseError, ServingError
from datamill.operators.base import Failed, LLMOperator, MissingInputError, Outcome, Row
from datamill.serving.dispatch import RequestDispatcher
from datamill.serving.types import GenericRequest, GenericResponse


async def compute_llm_batch(
    op: LLMOperator, call: dict, rows: list[Row], dispatcher: RequestDispatcher, *, step: int | None = None
) -> list[Outcome]:
    """Every row's outcome; a reply that fails validation is asked again with a salted request.

    ``apply_responses`` raising ``InvalidResponseError`` sends that row's requests again salted
    ``attempt-k`` (a distinct request key, so the cache keeps every attempt and a rerun replays
    them without paying), up to ``invalid_reply_retries`` (the operator's, else the serving's)
    more times; then the row fails with the last reason. Rows are retried in rounds, each round
    submitting all its rows' requests at once. A fatal error (a rejected API key) is raised:
    every other request of the serving would fail the same way; so is any error that is not a
    serving error (the budget reached, a failed ledger write, a bug). Spend is not counted here:
    the dispatcher records each paid response's cost with the response (``step`` tags it).
    """
    serving = op.llm_serving
    bound = getattr(op, "invalid_reply_retries", None)
    retries = int(bound if bound is not None else getattr(serving, "invalid_reply_retries", 0))
    outcomes: list[Outcome | None] = [None] * len(rows)
    pending: dict[int, list[GenericRequest]] = {}
    for index, row in enumerate(rows):
        try:
            pending[index] = op.build_requests(row, call)
        except MissingInputError as exc:
            outcomes[index] = Failed(str(exc))
    attempt = 0
    while pending:
        submitted = {
            index: [dispatcher.submit(serving, request, step=step) for request in requests]
            for index, requests in pending.items()
        }
        futures = [f for row_futures in submitted.values() for f in row_futures]
        await all_done(futures)
        errors = [f.exception() for f in futures]  # every one read, so none is reported unread
        fatal = next((e for e in errors if getattr(e, "fatal", False)), None)
        if fatal is not None:
            raise fatal.with_traceback(None)  # one error shared by every batch: no stacked frames
        bug = next((e for e in errors if e is not None and not isinstance(e, ServingError)), None)
        if bug is not None:
            raise bug
        retry: dict[int, list[GenericRequest]] = {}
        for index, row_futures in submitted.items():
            error = next((f.exception() for f in row_futures if f.exception() is not None), None)
            if error is not None:
                outcomes[index] = Failed(str(error))
                continue
            responses = [f.result() for f in row_futures]
            try:
                outcomes[index] = op.apply_responses(rows[index], responses, call)
            except MissingInputError as exc:
                outcomes[index] = Failed(str(exc))
            except InvalidResponseError as exc:
                if attempt < retries:
                    retry[index] = [salted(request, attempt + 1) for request in pending[index]]
                else:
                    suffix = f" (after {attempt + 1} attempts)" if attempt else ""
                    outcomes[index] = Failed(f"{exc}{suffix}")
        pending = retry
        attempt += 1
    return [outcome if outcome is not None else Failed("no outcome") for outcome in outcomes]


async def all_done(futures: list[asyncio.Future[GenericResponse]]) -> None:
    """Wait until every future is done (answered from the cache, they already are).

    A count and one waiter: ``asyncio.wait`` builds sets and adds and removes a callback per
    future on every call, which a batch of two rows pays in full.
    """
    remaining = sum(1 for future in futures if not future.done())
    if not remaining:
        return
    everything = asyncio.get_running_loop().create_future()

    def one_done(_: asyncio.Future[GenericResponse]) -> None:
        nonlocal remaining
        remaining -= 1
        if not remaining and not everything.done():
            everything.set_result(None)

    for future in futures:
        if not future.done():
            future.add_done_callback(one_done)
    await everything


def salted(request: GenericRequest, attempt: int) -> GenericRequest:
    """``request`` for its ``attempt``-th retry after an invalid reply (keeps a sample salt)."""
    base = (request.salt or "").split("attempt-")[0].rstrip("/")
    return request.with_salt(f"{base}/attempt-{attempt}" if base else f"attempt-{attempt}")

"""Computing one batch of an LLM operator: requests out through the dispatcher, outcomes back.

Each row's requests are submitted at once (the dispatcher answers from the cache, joins an
identical request in flight, or sends), so many batches can be in flight together; a batch
resolves when all its rows' responses are in. A request that failed after retries fails its
row — recorded, never written as ``null``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from datamill.errors import InvalidResponseError
from datamill.operators.base import Failed, LLMOperator, MissingInputError, Outcome, Row
from datamill.serving.dispatch import RequestDispatcher
from datamill.serving.types import GenericResponse


@dataclass
class LLMBatchResult:
    outcomes: list[Outcome]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    fresh_responses: list[GenericResponse] = field(default_factory=list)


async def compute_llm_batch(
    op: LLMOperator, call: dict, rows: list[Row], dispatcher: RequestDispatcher
) -> LLMBatchResult:
    serving = op.llm_serving
    per_row: list[list[asyncio.Future[GenericResponse]] | Failed] = []
    futures: list[asyncio.Future[GenericResponse]] = []
    for row in rows:
        try:
            requests = op.build_requests(row, call)
        except MissingInputError as exc:
            per_row.append(Failed(str(exc)))
            continue
        row_futures = [dispatcher.submit(serving, request) for request in requests]
        per_row.append(row_futures)
        futures.extend(row_futures)
    if futures:
        await asyncio.wait(set(futures))

    result = LLMBatchResult(outcomes=[])
    counted: set[int] = set()
    for row, item in zip(rows, per_row, strict=True):
        if isinstance(item, Failed):
            result.outcomes.append(item)
            continue
        error = next((f.exception() for f in item if f.exception() is not None), None)
        if error is not None:
            result.outcomes.append(Failed(str(error)))
            continue
        responses = [f.result() for f in item]
        for response in responses:
            if not response.cached and id(response) not in counted:
                counted.add(id(response))
                result.fresh_responses.append(response)
                result.prompt_tokens += response.prompt_tokens
                result.completion_tokens += response.completion_tokens
                result.cost_usd += serving.cost_usd(response)
        try:
            result.outcomes.append(op.apply_responses(row, responses, call))
        except (InvalidResponseError, MissingInputError) as exc:
            result.outcomes.append(Failed(str(exc)))
    return result

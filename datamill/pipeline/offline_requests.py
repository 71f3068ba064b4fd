"""The requests an offline (Batch API) step must have answered, invalid replies included.

Online, a reply that fails the operator's validation is asked again at once with a salted
request (``llm_batch.salted``). Offline the replies arrive in batch jobs, so the same retry is a
resubmission: each time the offline engine walks the step's requests, a row whose answers are
all in the cache is checked by the operator, and an invalid reply adds the row's next salted
attempt, up to the same bound as online. Operators that take any reply (``validates_replies``
false: plain generators) are not checked, so their cached replies are never read here. When
the step's batches then run, the dispatcher finds every attempt in the cache (or recorded as
failed), and a row still invalid after the last attempt fails with its reason, as online."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from datamill.core.ledger import Ledger
from datamill.errors import InvalidResponseError
from datamill.operators.base import LLMOperator, MissingInputError, Row
from datamill.pipeline.llm_batch import salted
from datamill.serving.types import GenericRequest, GenericResponse

_ROWS_PER_LOOKUP = 256


def offline_step_requests(
    op: LLMOperator, call: dict, rows: Iterable[tuple[Row, int]], cache: Ledger
) -> Iterator[GenericRequest]:
    """Every request of ``rows`` the Batch API must answer: each row's requests and, for a row
    whose cached replies fail validation, its next salted attempt (bounded by
    ``invalid_reply_retries``, the operator's else the serving's). Rows missing their input
    are skipped (they fail when the step runs)."""
    bound = getattr(op, "invalid_reply_retries", None)
    retries = int(bound if bound is not None else getattr(op.llm_serving, "invalid_reply_retries", 0))
    if not op.validates_replies:
        retries = 0  # any reply will do: no need to read the cached ones
    group: list[tuple[Row, list[GenericRequest]]] = []
    for row, _ in rows:
        try:
            group.append((row, op.build_requests(row, call)))
        except MissingInputError:
            continue
        if len(group) >= _ROWS_PER_LOOKUP:
            yield from _walk(op, call, group, cache, retries)
            group = []
    yield from _walk(op, call, group, cache, retries)


def _walk(
    op: LLMOperator,
    call: dict,
    group: list[tuple[Row, list[GenericRequest]]],
    cache: Ledger,
    retries: int,
) -> Iterator[GenericRequest]:
    """The group's requests, attempt after attempt while every reply is cached and invalid."""
    if not retries:
        for _, requests in group:
            yield from requests
        return
    attempt = 0
    while group and attempt <= retries:
        answers = cache.get_many([request.key for _, requests in group for request in requests])
        retry: list[tuple[Row, list[GenericRequest]]] = []
        for row, requests in group:
            yield from requests
            if attempt == retries or any(request.key not in answers for request in requests):
                continue
            responses = [GenericResponse.from_cache(answers[request.key]) for request in requests]
            try:
                op.apply_responses(row, responses, call)
            except InvalidResponseError:
                retry.append((row, [salted(request, attempt + 1) for request in requests]))
            except MissingInputError:
                continue
        group = retry
        attempt += 1

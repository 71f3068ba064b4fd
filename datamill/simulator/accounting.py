"""What the simulated provider was asked and what it answered: the evidence for "never pays twice".

Every counter update is O(1): a dict or set keyed by ``request_hash`` (``replies.py``). The
important distinction is between a *retry* and a *duplicate*: a call is a duplicate only when
its hash had already been answered with a usable 200 (a call paid twice). A retry after a 500,
a 429, a dropped connection or a malformed body is not, because nothing usable was delivered.
Online calls and batch lines share the set of answered hashes, so paying for the same request
once in a batch and again online counts too.

Client keys are datamill's own request keys: the ``X-Datamill-Request-Key`` header of an online
call, or the ``custom_id`` of a batch line. A key answered more than once is a key paid twice.
"""

from __future__ import annotations

from typing import Any

COUNTERS = (
    "requests",
    "distinct_requests",
    "duplicates",
    "answered",
    "rate_limited",
    "server_errors",
    "malformed",
    "dropped",
    "unauthorized",
    "bad_requests",
    "files_created",
    "batches_created",
    "batch_requests",
    "batch_answered",
    "batch_duplicates",
    "prompt_tokens",
    "completion_tokens",
    "in_flight",
    "peak_in_flight",
)


class Accounting:
    """Counters of one simulator; read with ``snapshot``, cleared with ``reset``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Zero every counter and forget every hash and client key."""
        self.requests = 0
        self.duplicates = 0
        self.answered = 0
        self.rate_limited = 0
        self.server_errors = 0
        self.malformed = 0
        self.dropped = 0
        self.unauthorized = 0
        self.bad_requests = 0
        self.files_created = 0
        self.batches_created = 0
        self.batch_requests = 0
        self.batch_answered = 0
        self.batch_duplicates = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.in_flight = 0  # online calls being served right now
        self.peak_in_flight = 0  # the most served at once: a client's real concurrency
        self._seen: set[str] = set()
        self._answered_hashes: set[str] = set()
        self._answered_by_key: dict[str, int] = {}
        self._duplicate_keys: dict[str, None] = {}

    def call_started(self) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def call_ended(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)  # a reset meanwhile zeroed it

    def record_seen(self, h: str) -> None:
        """A parsed online call with hash ``h`` arrived (counts toward ``distinct_requests``)."""
        self._seen.add(h)

    def record_answer(
        self, h: str, client_key: str | None, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """An online call was answered with a usable 200."""
        self.answered += 1
        if h in self._answered_hashes:
            self.duplicates += 1
        else:
            self._answered_hashes.add(h)
        self._record_tokens_and_key(client_key, prompt_tokens, completion_tokens)

    def record_batch_answer(self, h: str, custom_id: str, prompt_tokens: int, completion_tokens: int) -> None:
        """A batch line was answered with a usable 200 (it lands in the output file)."""
        self.batch_answered += 1
        if h in self._answered_hashes:
            self.batch_duplicates += 1
        else:
            self._answered_hashes.add(h)
        self._record_tokens_and_key(custom_id, prompt_tokens, completion_tokens)

    def _record_tokens_and_key(
        self, client_key: str | None, prompt_tokens: int, completion_tokens: int
    ) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if client_key is not None:
            count = self._answered_by_key.get(client_key, 0) + 1
            self._answered_by_key[client_key] = count
            if count == 2:
                self._duplicate_keys[client_key] = None

    def snapshot(self, *, detail: bool = False) -> dict[str, Any]:
        """The counters as a JSON-ready dict; ``detail`` adds the per-client-key view."""
        data: dict[str, Any] = {
            name: len(self._seen) if name == "distinct_requests" else getattr(self, name) for name in COUNTERS
        }
        if detail:
            data["answered_by_client_key"] = dict(self._answered_by_key)
            data["duplicate_client_keys"] = list(self._duplicate_keys)
        return data

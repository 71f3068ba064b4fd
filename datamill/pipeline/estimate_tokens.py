"""What one step's requests are expected to use: prompt tokens now, completion tokens later.

Prompt tokens are counted (tiktoken where available, else ``ceil(chars / 4)`` plus a
per-message overhead). Completion tokens are unknown until the replies come; the expectation
per sample is, in order of preference:

1. **given**: the midpoint of ``completion_tokens=(low, high)``;
2. **observed**: the mean completion of this step's replies already in the request cache
   (from any earlier, partial run), bounded by each request's ``max_tokens``;
3. **from the prompt**: as long as the request's last user message, bounded by
   ``max_tokens`` — right for the rewriting, answering and translating that most data
   generation is, and always named in the estimate so it can be judged.

Observed replies also calibrate the prompt count: their billed prompt tokens over the counted
ones scale the count of the requests still to send. The range (``low``/``high``) stays wide:
64 tokens to ``max_tokens`` (1024 without one), widened to hold the expectation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datamill.serving.tokens import estimate_prompt_tokens, text_of, token_counter
from datamill.serving.types import GenericRequest, GenericResponse

DEFAULT_COMPLETION_LOW = 64
DEFAULT_COMPLETION_HIGH = 1024

BASIS_GIVEN = "given"
BASIS_OBSERVED = "observed"
BASIS_PROMPT = "from the prompt"


@dataclass
class Observed:
    """This step's replies found in the request cache: what they were billed."""

    replies: int = 0
    samples: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    counted_prompt_tokens: int = 0

    def add(self, request: GenericRequest, response: GenericResponse) -> None:
        self.replies += 1
        self.samples += samples_of(request)
        self.completion_tokens += response.completion_tokens
        self.prompt_tokens += response.prompt_tokens
        self.counted_prompt_tokens += estimate_prompt_tokens(request.messages, request.model)

    @property
    def completion_per_sample(self) -> float | None:
        return self.completion_tokens / self.samples if self.samples else None

    @property
    def prompt_scale(self) -> float:
        """Billed over counted prompt tokens (1.0 until a reply with usage was seen)."""
        if not self.prompt_tokens or not self.counted_prompt_tokens:
            return 1.0
        return self.prompt_tokens / self.counted_prompt_tokens


@dataclass
class Pending:
    """The requests still to send, summed without keeping them (a step may have millions)."""

    requests: int = 0
    prompt_tokens: int = 0
    from_prompt: int = 0  # completion tokens expected from each last user message, bounded
    samples_by_cap: dict[int | None, int] = field(default_factory=dict)

    def add(self, request: GenericRequest) -> None:
        samples = samples_of(request)
        cap = max_tokens_of(request)
        self.requests += 1
        self.prompt_tokens += estimate_prompt_tokens(request.messages, request.model)
        reply = last_user_tokens(request)
        self.from_prompt += samples * (reply if cap is None else min(reply, cap))
        self.samples_by_cap[cap] = self.samples_by_cap.get(cap, 0) + samples

    def scaled(self, factor: float) -> Pending:
        """These sums times ``factor`` (a sample of rows standing for a whole step)."""
        return Pending(
            round(self.requests * factor),
            round(self.prompt_tokens * factor),
            round(self.from_prompt * factor),
            {cap: round(samples * factor) for cap, samples in self.samples_by_cap.items()},
        )

    @property
    def samples(self) -> int:
        return sum(self.samples_by_cap.values())


@dataclass
class Expectation:
    """Expected tokens of the pending requests, with a range and the basis of the completion."""

    prompt_tokens: int
    completion_tokens: int
    completion_low: int
    completion_high: int
    basis: str


def expect(pending: Pending, observed: Observed, given: tuple[int, int] | None) -> Expectation:
    """The expected prompt and completion tokens of ``pending`` (see the module docstring)."""
    prompt = round(pending.prompt_tokens * observed.prompt_scale)
    low = high = 0
    for cap, samples in pending.samples_by_cap.items():
        if given is not None:
            low += given[0] * samples
            high += given[1] * samples
        else:
            low += min(DEFAULT_COMPLETION_LOW, cap if cap is not None else DEFAULT_COMPLETION_LOW) * samples
            high += (cap if cap is not None else DEFAULT_COMPLETION_HIGH) * samples
    per_sample = observed.completion_per_sample
    if given is not None:
        expected, basis = (low + high) // 2, BASIS_GIVEN
    elif per_sample is not None:
        expected = round(
            sum(
                samples * (per_sample if cap is None else min(per_sample, cap))
                for cap, samples in pending.samples_by_cap.items()
            )
        )
        basis = f"{BASIS_OBSERVED} ({observed.replies} cached replies)"
    else:
        expected, basis = pending.from_prompt, BASIS_PROMPT
    return Expectation(prompt, expected, min(low, expected), max(high, expected), basis)


def samples_of(request: GenericRequest) -> int:
    return int(request.params.get("n") or 1)


def max_tokens_of(request: GenericRequest) -> int | None:
    value: Any = request.params.get("max_tokens") or request.params.get("max_completion_tokens")
    return int(value) if value else None


def last_user_tokens(request: GenericRequest) -> int:
    """Tokens of the request's last user message (0 without one)."""
    for message in reversed(request.messages):
        if message.get("role") == "user":
            return token_counter(request.model)(text_of(message.get("content")))
    return 0


def filler_text(tokens: float, model: str) -> str:
    """Text of about ``tokens`` tokens for ``model``: stands for a column not produced yet."""
    target = max(0, round(tokens))
    if target == 0:
        return ""
    count = token_counter(model)
    words = target
    text = " ".join(["data"] * words)
    measured = count(text)
    if measured and measured != target:
        text = " ".join(["data"] * max(1, round(words * target / measured)))
    return text

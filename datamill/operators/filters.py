"""Rule filters: keep a row or drop it with a reason (counted per step in the state database).

Each filter's ``run(storage, input_key=...)`` names the column it reads; rows pass through
unchanged, so a filter adds no column. ``LanguageFilter`` needs ``py3langid``
(``pip install 'datamill[lang]'``), whose model ships inside the package: nothing is downloaded.
"""

from __future__ import annotations

import re
from typing import Any

from datamill.errors import ConfigError
from datamill.operators.base import Dropped, Failed, Outcome, Row, require
from datamill.operators.rowwise import RowOperator

LENGTH_UNITS = ("chars", "words")


class ScoreFilter(RowOperator):
    """Keep rows whose numeric ``input_key`` (``"score"`` by default) is at least ``min_score``
    (and at most ``max_score`` when given); others are ``Dropped("score below N")`` /
    ``Dropped("score above N")``. A value that is not a number fails the row.
    """

    def __init__(self, min_score: float, max_score: float | None = None) -> None:
        if max_score is not None and max_score < min_score:
            raise ConfigError(f"max_score ({max_score}) is below min_score ({min_score})")
        self.min_score = min_score
        self.max_score = max_score

    def run(self, storage: Any, input_key: str = "score") -> None:  # type: ignore[override]
        super().run(storage, input_key=input_key)

    def process_row(self, row: Row, call: dict[str, Any]) -> Outcome:
        value = require(row, call["input_key"])
        try:
            score = float(value)
        except (TypeError, ValueError):
            return Failed(f"{call['input_key']} is not a number: {value!r}")
        if score < self.min_score:
            return Dropped(f"score below {self.min_score}")
        if self.max_score is not None and score > self.max_score:
            return Dropped(f"score above {self.max_score}")
        return row


class LengthFilter(RowOperator):
    """Keep rows whose text in ``input_key`` has between ``min_length`` and ``max_length``
    characters (``unit="chars"``) or whitespace-separated words (``unit="words"``), inclusive.
    """

    def __init__(self, min_length: int = 0, max_length: int | None = None, unit: str = "chars") -> None:
        if unit not in LENGTH_UNITS:
            raise ConfigError(f"unit must be one of {LENGTH_UNITS}, got {unit!r}")
        if max_length is not None and max_length < min_length:
            raise ConfigError(f"max_length ({max_length}) is below min_length ({min_length})")
        self.min_length = min_length
        self.max_length = max_length
        self.unit = unit

    def run(self, storage: Any, input_key: str = "generated_content") -> None:  # type: ignore[override]
        super().run(storage, input_key=input_key)

    def process_row(self, row: Row, call: dict[str, Any]) -> Outcome:
        text = str(require(row, call["input_key"]))
        length = len(text.split()) if self.unit == "words" else len(text)
        if length < self.min_length:
            return Dropped(f"shorter than {self.min_length} {self.unit}")
        if self.max_length is not None and length > self.max_length:
            return Dropped(f"longer than {self.max_length} {self.unit}")
        return row


class RegexFilter(RowOperator):
    """Keep rows whose ``input_key`` text matches ``pattern`` (``re.search``); with
    ``keep_matching=False``, drop them instead. ``flags`` are ``re`` flags (e.g. ``re.I``).
    """

    def __init__(self, pattern: str, *, keep_matching: bool = True, flags: int = 0) -> None:
        try:
            self._regex = re.compile(pattern, flags)
        except re.error as exc:
            raise ConfigError(f"invalid regular expression {pattern!r}: {exc}") from None
        self.pattern = pattern
        self.keep_matching = keep_matching
        self.flags = int(flags)

    def run(self, storage: Any, input_key: str = "generated_content") -> None:  # type: ignore[override]
        super().run(storage, input_key=input_key)

    def process_row(self, row: Row, call: dict[str, Any]) -> Outcome:
        matched = self._regex.search(str(require(row, call["input_key"]))) is not None
        if matched == self.keep_matching:
            return row
        return Dropped(f"{'does not match' if self.keep_matching else 'matches'} /{self.pattern}/")


class LanguageFilter(RowOperator):
    """Keep rows whose ``input_key`` text is in one of ``languages`` (ISO 639-1 codes such as
    ``"en"``), detected by py3langid; with ``min_confidence`` (a probability in 0..1), a less
    certain detection drops the row too. ``language_key``, when given, also records the
    detected language in that column.
    """

    def __init__(
        self, languages: list[str] | str, min_confidence: float = 0.0, language_key: str | None = None
    ) -> None:
        self.languages = sorted({languages} if isinstance(languages, str) else set(languages))
        if not self.languages:
            raise ConfigError("LanguageFilter needs at least one language code")
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"min_confidence must be within [0, 1], got {min_confidence}")
        self.min_confidence = min_confidence
        self.language_key = language_key
        self._identifier: Any = None

    def run(self, storage: Any, input_key: str = "generated_content") -> None:  # type: ignore[override]
        super().run(storage, input_key=input_key)

    def output_keys(self, call: dict[str, Any]) -> list[str]:
        return [self.language_key] if self.language_key else []

    def process_row(self, row: Row, call: dict[str, Any]) -> Outcome:
        language, confidence = self._identify(str(require(row, call["input_key"])))
        if language not in self.languages:
            return Dropped(f"language not in {self.languages}")
        if confidence < self.min_confidence:
            return Dropped(f"language confidence below {self.min_confidence}")
        return {**row, self.language_key: language} if self.language_key else row

    def _identify(self, text: str) -> tuple[str, float]:
        if self._identifier is None:
            self._identifier = load_language_identifier()
        language, confidence = self._identifier.classify(text)
        return language, float(confidence)


def load_language_identifier() -> Any:
    """py3langid's identifier with probabilities normalised to 0..1 (its model is packaged)."""
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        raise ConfigError("LanguageFilter needs py3langid: pip install 'datamill[lang]'") from None
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

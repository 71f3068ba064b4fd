"""``LLMLanguageFilter``: a model names each row's language; rows outside the allowed list leave.

DataFlow's name and signature (``LLMLanguageFilter(llm_serving, allowed_languages=[...])``,
``run(storage, input_key, output_key="language_label")``), so pipelines ported from DataFlow run
unchanged. Unlike ``LanguageFilter`` (a local classifier) it costs one model call per distinct
text, and copes with short, mixed or unusual text where a classifier guesses.

The request asks for ``{"language": "<code>"}`` with the code constrained to ISO 639-1 through
``response_format`` (``use_response_format=False`` for endpoints without structured outputs);
the reply is read leniently: that JSON object, a bare code, or a code named in a short sentence.
A reply naming no ISO 639-1 code is an ``InvalidResponseError``: it is asked again, and the row
fails (retried on resume) if it keeps happening. A row outside ``allowed_languages`` is dropped
with the reason ``language 'xx' not in [...]``, so the state database counts drops per language.
"""

from __future__ import annotations

import re
from typing import Any

from datamill.errors import ConfigError, InvalidResponseError
from datamill.operators.base import Dropped, Operator, Outcome, Row, require
from datamill.operators.generate import SamplingGenerator, with_system
from datamill.serving.base import LLMServingABC
from datamill.serving.structured import parse_json_object, response_format_for
from datamill.serving.types import GenericResponse

#: Every ISO 639-1 code (two letters), the answers the request allows.
ISO_639_1 = tuple(
    """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy
    da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu
    hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb
    lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om
    or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw
    ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
    """.split()
)
_KNOWN = frozenset(ISO_639_1)
_CODE_IN_PROSE = (
    re.compile(r"\(([a-z]{2})\)", re.IGNORECASE),
    re.compile(r"[\"'`]([a-z]{2})[\"'`]", re.IGNORECASE),
    re.compile(r"(?:language|code)\s*(?:is|:|=)\s*([a-z]{2})\b", re.IGNORECASE),
)

LANGUAGE_RESPONSE_FORMAT = {
    "response_format": response_format_for(
        {
            "type": "object",
            "properties": {"language": {"type": "string", "enum": list(ISO_639_1)}},
            "required": ["language"],
            "additionalProperties": False,
        },
        "language",
        strict=True,
    )
}

SYSTEM_PROMPT = (
    "Identify the language the user's text is written in. Answer with its ISO 639-1 code "
    '(two lowercase letters, e.g. en, zh, fr) as JSON: {"language": "<code>"}. '
    "For text mixing languages, give the language of most of the text."
)


def parse_language_code(text: str) -> str:
    """The ISO 639-1 code a reply names: JSON ``{"language": ...}``, a bare code, or a code in prose.

    Raises ``InvalidResponseError`` when the reply names no known code.
    """
    stripped = text.strip().strip("`\"'. \n").lower()
    if stripped in _KNOWN:
        return stripped
    try:
        data = parse_json_object(text)
    except InvalidResponseError:
        data = None
    if data is not None:
        value = next((v for k, v in data.items() if str(k).lower() in ("language", "code", "lang")), None)
        code = str(value or "").strip().lower()
        if code in _KNOWN:
            return code
    for pattern in _CODE_IN_PROSE:
        for match in pattern.finditer(text):
            code = match.group(1).lower()
            if code in _KNOWN:
                return code
    raise InvalidResponseError(f"the reply names no ISO 639-1 language code: {text[:200]!r}")


class LLMLanguageFilter(SamplingGenerator):
    """Keep rows whose ``input_key`` text a model identifies as one of ``allowed_languages``.

    ``allowed_languages`` are ISO 639-1 codes (``["en"]`` by default, as in DataFlow). The
    detected code is written to ``output_key`` (``language_label``) on the rows kept; the
    others are ``Dropped("language 'xx' not in [...]")``. Only the first ``max_chars``
    characters of the text are sent (None: all of it): a language shows in a paragraph, and a
    long document would cost its full length for one two-letter answer.
    """

    def __init__(
        self,
        llm_serving: LLMServingABC | None = None,
        allowed_languages: list[str] | tuple[str, ...] = ("en",),
        *,
        max_chars: int | None = 2000,
        use_response_format: bool = True,
    ) -> None:
        if llm_serving is None:
            raise ConfigError("LLMLanguageFilter needs llm_serving: the model that names each row's language")
        super().__init__(llm_serving)
        codes = [allowed_languages] if isinstance(allowed_languages, str) else list(allowed_languages)
        unknown = [code for code in codes if str(code).lower() not in _KNOWN]
        if not codes or unknown:
            raise ConfigError(
                f"allowed_languages must be ISO 639-1 codes such as 'en' or 'zh'; not codes: {unknown or codes}"
            )
        if max_chars is not None and max_chars < 1:
            raise ConfigError(f"max_chars must be a positive number of characters or None, got {max_chars}")
        self.allowed_languages = sorted({str(code).lower() for code in codes})
        self.max_chars = max_chars
        self.use_response_format = use_response_format
        self._params = LANGUAGE_RESPONSE_FORMAT if use_response_format else {}

    def run(self, storage: Any, input_key: str, output_key: str = "language_label") -> None:  # type: ignore[override]
        Operator.run(self, storage, input_key=input_key, output_key=output_key)

    def request_params(self) -> dict[str, Any]:
        return self._params

    def build_messages(self, row: Row, call: dict[str, Any]) -> list[dict[str, Any]]:
        text = str(require(row, call["input_key"]))
        if self.max_chars is not None:
            text = text[: self.max_chars]
        return with_system(SYSTEM_PROMPT, [{"role": "user", "content": text}])

    def apply_responses(self, row: Row, responses: list[GenericResponse], call: dict[str, Any]) -> Outcome:
        texts = [text for response in responses for text in response.texts]
        if not texts:
            raise InvalidResponseError("the reply has no text")
        code = parse_language_code(texts[0])
        if code not in self.allowed_languages:
            return Dropped(f"language {code!r} not in {self.allowed_languages}")
        return {**row, call["output_key"]: code}

"""datamill.operators: generators, judges, filters, function wrappers and deduplicators.

Names resolve lazily, so importing the package loads no operator module (dedup's numpy and
the language filter's model load only when used).
"""

from __future__ import annotations

from datamill._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Operator": "datamill.operators.base",
    "LLMOperator": "datamill.operators.base",
    "Dropped": "datamill.operators.base",
    "Failed": "datamill.operators.base",
    "RowOperator": "datamill.operators.rowwise",
    "PromptedGenerator": "datamill.operators.generate",
    "SamplingGenerator": "datamill.operators.generate",
    "PromptTemplateGenerator": "datamill.operators.templated",
    "ChatGenerator": "datamill.operators.chat",
    "StructuredGenerator": "datamill.operators.structured",
    "LLMScorer": "datamill.operators.judge",
    "ScoreFilter": "datamill.operators.filters",
    "LengthFilter": "datamill.operators.filters",
    "RegexFilter": "datamill.operators.filters",
    "LanguageFilter": "datamill.operators.filters",
    "LLMLanguageFilter": "datamill.operators.llm_language",
    "MetaSampleEvaluator": "datamill.operators.meta_eval",
    "MapOperator": "datamill.operators.functional",
    "FilterOperator": "datamill.operators.functional",
    "ExpandOperator": "datamill.operators.functional",
    "ExactDeduplicator": "datamill.operators.dedup",
    "MinHashDeduplicator": "datamill.operators.dedup",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(globals(), _EXPORTS)

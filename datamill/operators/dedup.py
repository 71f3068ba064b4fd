"""Whole-dataset deduplication: ``ExactDeduplicator`` and ``MinHashDeduplicator``.

Both are whole-dataset operators (``row_local = False``): in ``prepare`` the engine streams
the step's entire input through them once, and they decide which input rows to keep — the
first occurrence of each value, by input row index — keeping only compact state (a 16-byte
hash per row while deciding, then one byte per row). Batches then look their rows up by
absolute index, so the decision does not depend on batch size, and a resume, which calls
``prepare`` again over the same input, reaches the same decision.

Memory for 1M input rows: exact, about 16 MB while deciding and 1 MB after; MinHash, about
``8 × bands`` bytes per row while deciding (≈ 72 MB at the defaults) and 1 MB after.
Needs numpy (``pip install 'datamill[dedup]'``).
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from datamill.core.fingerprint import canonical_json
from datamill.errors import ConfigError
from datamill.operators.base import Dropped, Failed, MissingInputError, Operator, Outcome, Row, require

_CHUNK_SHINGLES = 16384  # a chunk's permutation matrix: num_perm x 16384 x 8 bytes (16 MB at 128)
_MERSENNE = (1 << 61) - 1
_WORD = re.compile(r"\w+", re.UNICODE)


def import_numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise ConfigError("deduplication needs numpy: pip install 'datamill[dedup]'") from None
    return numpy


class Deduplicator(Operator):
    """Shared by the deduplicators: the keep decision per input row, and applying it."""

    row_local = False
    drop_reason = "duplicate"

    def __init__(self) -> None:
        self._keep: Any = None

    def run(self, storage: Any, input_key: str | list[str] | None = None) -> None:  # type: ignore[override]
        super().run(storage, input_key=input_key)

    def prepare(self, rows: Iterable[Row], call: dict[str, Any]) -> None:
        self._keep = self.decide(rows, call)

    def decide(self, rows: Iterable[Row], call: dict[str, Any]) -> Any:
        """A boolean numpy array, one entry per input row: True keeps the row."""
        raise NotImplementedError

    def process_rows(self, rows: list[Row], first_row: int, call: dict[str, Any]) -> list[Outcome]:
        keep = self._keep
        if keep is None or first_row + len(rows) > len(keep):
            raise ConfigError(
                f"{type(self).__name__}: prepare() must see the whole step input before batches"
            )
        outcomes: list[Outcome] = []
        for offset, row in enumerate(rows):
            try:
                self.dedup_value(row, call)
            except MissingInputError as exc:
                outcomes.append(Failed(str(exc)))
                continue
            outcomes.append(row if keep[first_row + offset] else Dropped(self.drop_reason))
        return outcomes

    def process_batch(self, rows: list[Row], call: dict[str, Any]) -> list[Outcome]:
        raise ConfigError(
            f"{type(self).__name__} is a whole-dataset operator: the engine calls process_rows()"
        )

    def dedup_value(self, row: Row, call: dict[str, Any]) -> Any:
        """What two rows must share to be duplicates: the keyed columns, or the whole row."""
        key = call.get("input_key")
        if key is None:
            return row
        if isinstance(key, str):
            return require(row, key)
        return [require(row, name) for name in key]


class ExactDeduplicator(Deduplicator):
    """Keep the first row of each distinct value of ``input_key`` (a column, a list of
    columns, or, when omitted, the whole row); later copies are ``Dropped("duplicate")``.
    With ``normalize=True`` strings compare case-insensitively with whitespace collapsed.
    A row missing a keyed column fails (and is not counted as a first occurrence).
    """

    def __init__(self, normalize: bool = False) -> None:
        super().__init__()
        self.normalize = normalize

    def decide(self, rows: Iterable[Row], call: dict[str, Any]) -> Any:
        np = import_numpy()
        digests = bytearray()
        valid = bytearray()
        for row in rows:
            try:
                value = self.dedup_value(row, call)
            except MissingInputError:
                digests += bytes(16)
                valid.append(0)
                continue
            text = canonical_json(value)
            if self.normalize:
                text = " ".join(text.lower().split())
            digests += hashlib.blake2b(text.encode(), digest_size=16).digest()
            valid.append(1)
        return first_occurrences(np, np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2), valid)


class MinHashDeduplicator(Deduplicator):
    """Drop rows whose text in ``input_key`` is a near-duplicate of an earlier row.

    Each text becomes the set of its word ``ngram``-grams (lower-cased; a text shorter than
    ``ngram`` words is one shingle), summarised by a ``num_perm``-value MinHash signature;
    locality-sensitive hashing splits the signature into bands tuned for ``threshold`` (the
    estimated Jaccard similarity above which rows count as duplicates). A row is dropped
    (``Dropped("near-duplicate")``) when it shares a band with any earlier row — so near-
    duplicates of near-duplicates go too — and kept otherwise: the first row of every group
    is kept. Pairs are not re-verified against the signatures (that would mean holding every
    signature), so pairs just below ``threshold`` are sometimes dropped too, as LSH's S-curve
    predicts. ``seed`` fixes the hash permutations: the same input always gives the same rows.
    """

    drop_reason = "near-duplicate"

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1) -> None:
        super().__init__()
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"threshold must be between 0 and 1, got {threshold}")
        if num_perm < 2 or ngram < 1:
            raise ConfigError("num_perm must be at least 2 and ngram at least 1")
        self.threshold = threshold
        self.num_perm = num_perm
        self.ngram = ngram
        self.seed = seed
        self.bands, self.rows_per_band = lsh_parameters(threshold, num_perm)

    def run(self, storage: Any, input_key: str = "text") -> None:  # type: ignore[override]
        if not isinstance(input_key, str):
            raise ConfigError("MinHashDeduplicator compares one text column: pass input_key='column'")
        super().run(storage, input_key=input_key)

    def decide(self, rows: Iterable[Row], call: dict[str, Any]) -> Any:
        np = import_numpy()
        hasher = _MinHasher(np, self.num_perm, self.bands, self.rows_per_band, self.seed)
        chunks, valid = [], bytearray()
        pending: list[list[int] | None] = []
        pending_shingles = 0
        for row in rows:
            try:
                shingles: list[int] | None = shingle_hashes(str(self.dedup_value(row, call)), self.ngram)
            except MissingInputError:
                shingles = None
            valid.append(shingles is not None)
            pending.append(shingles)
            pending_shingles += len(shingles or ())
            if pending_shingles >= _CHUNK_SHINGLES:
                chunks.append(hasher.band_hashes(pending))
                pending, pending_shingles = [], 0
        if pending:
            chunks.append(hasher.band_hashes(pending))
        if not chunks:
            return np.zeros(0, dtype=bool)
        bands = np.concatenate(chunks)
        keep = np.ones(len(bands), dtype=bool)
        for band in range(self.bands):
            keep &= first_occurrences(np, bands[:, band], valid)
        return keep


def first_occurrences(np: Any, keys: Any, valid: bytearray) -> Any:
    """True where a row's key (an entry, or a row, of ``keys``) is valid and seen for the first time.

    A stable sort groups equal keys with their rows in input order, so each group's first
    element is its first occurrence.
    """
    columns = keys.reshape(len(keys), -1)[np.frombuffer(valid, dtype=np.bool_)]
    indices = np.flatnonzero(np.frombuffer(valid, dtype=np.bool_))
    keep = np.zeros(len(keys), dtype=bool)
    if not len(indices):
        return keep
    order = np.lexsort(columns.T[::-1])
    ordered = columns[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    keep[indices[order[starts]]] = True
    return keep


def shingle_hashes(text: str, ngram: int) -> list[int]:
    """32-bit hashes of the text's lower-cased word n-grams (one shingle when it is shorter)."""
    words = _WORD.findall(text.lower())
    if len(words) <= ngram:
        return [zlib.crc32(" ".join(words).encode())]
    return list({zlib.crc32(" ".join(words[i : i + ngram]).encode()) for i in range(len(words) - ngram + 1)})


class _MinHasher:
    """MinHash signatures and LSH band hashes for many texts at once, with numpy."""

    def __init__(self, np: Any, num_perm: int, bands: int, rows_per_band: int, seed: int) -> None:
        self.np = np
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 1 << 31, size=num_perm, dtype=np.uint64)[:, None]
        self.b = rng.integers(0, 1 << 61, size=num_perm, dtype=np.uint64)[:, None]
        self.bands = bands
        self.rows_per_band = rows_per_band
        self.mix = rng.integers(1, 1 << 63, size=rows_per_band, dtype=np.uint64) | np.uint64(1)

    def band_hashes(self, shingle_sets: list[list[int] | None]) -> Any:
        """One 64-bit hash per band per text (zeros for a missing text)."""
        np = self.np
        counts = np.array([len(s) if s else 1 for s in shingle_sets], dtype=np.int64)
        flat = np.fromiter(
            (h for s in shingle_sets for h in (s or [0])), dtype=np.uint64, count=int(counts.sum())
        )
        permuted = (self.a * flat[None, :] + self.b) % np.uint64(_MERSENNE)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        signatures = np.minimum.reduceat(permuted & np.uint64(0xFFFFFFFF), starts, axis=1).T
        used = signatures[:, : self.bands * self.rows_per_band].reshape(
            len(counts), self.bands, self.rows_per_band
        )
        return (used * self.mix).sum(axis=2, dtype=np.uint64)


@lru_cache(maxsize=64)
def lsh_parameters(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows per band minimising false positives plus false negatives at ``threshold``
    (the same criterion as datasketch's ``MinHashLSH``, equal weights)."""
    best, best_error = (1, num_perm), math.inf
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_positive = _integrate(lambda s, b=bands, r=rows: 1 - (1 - s**r) ** b, 0.0, threshold)
            false_negative = _integrate(lambda s, b=bands, r=rows: (1 - s**r) ** b, threshold, 1.0)
            error = false_positive + false_negative
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def _integrate(f: Any, low: float, high: float, steps: int = 200) -> float:
    width = (high - low) / steps
    return sum(f(low + (i + 0.5) * width) for i in range(steps)) * width

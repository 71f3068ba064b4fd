"""A Bloom filter over request keys: "certainly not cached" without a database lookup.

On a run's hot path most cache lookups miss (every request of a fresh run does), and each
SQLite lookup costs far more on the event loop than its own work, because it hands the GIL to
the writer threads and must wait to get it back. The filter answers those misses in a couple
of microseconds. A false positive costs one ordinary lookup; a filter filled past its capacity
only loses speed, never correctness.

Request keys are SHA-256 hex digests, so the hash positions are read straight from the key's
own bits (double hashing from two 64-bit slices); any other key is treated as "maybe".
"""

from __future__ import annotations

MIN_BITS = 1 << 23  # 1 MiB
BITS_PER_KEY = 16
HASHES = 5


class KeyFilter:
    def __init__(self, expected_keys: int) -> None:
        bits = MIN_BITS
        while bits < expected_keys * BITS_PER_KEY:
            bits <<= 1
        self._mask = bits - 1
        self._bits = bytearray(bits // 8)

    def add(self, key: str) -> None:
        pair = _hash_pair(key)
        if pair is None:
            return
        first, second = pair
        bits, mask = self._bits, self._mask
        for _ in range(HASHES):
            position = first & mask
            bits[position >> 3] |= 1 << (position & 7)
            first += second

    def might_contain(self, key: str) -> bool:
        # On the event loop for every request: stops at the first clear bit.
        pair = _hash_pair(key)
        if pair is None:
            return True
        first, second = pair
        bits, mask = self._bits, self._mask
        for _ in range(HASHES):
            position = first & mask
            if not bits[position >> 3] & (1 << (position & 7)):
                return False
            first += second
        return True


def _hash_pair(key: str) -> tuple[int, int] | None:
    """The double-hashing pair read from a hex key's first 128 bits; None for any other key."""
    try:
        return int(key[:16], 16), int(key[16:32], 16) | 1
    except ValueError:
        return None

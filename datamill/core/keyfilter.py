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
        positions = self._positions(key)
        if positions is None:
            return
        bits = self._bits
        for position in positions:
            bits[position >> 3] |= 1 << (position & 7)

    def might_contain(self, key: str) -> bool:
        # On the event loop for every request: unrolled, and stopping at the first clear bit.
        try:
            first, second = int(key[:16], 16), int(key[16:32], 16) | 1
        except ValueError:
            return True
        bits, mask = self._bits, self._mask
        for _ in range(HASHES):
            position = first & mask
            if not bits[position >> 3] & (1 << (position & 7)):
                return False
            first += second
        return True

    def _positions(self, key: str) -> list[int] | None:
        try:
            first, second = int(key[:16], 16), int(key[16:32], 16) | 1
        except ValueError:
            return None
        mask = self._mask
        return [(first + index * second) & mask for index in range(HASHES)]

"""JSON inputs the plain JSONL reader does not take: a ``.json`` array of objects, and JSON
lines (or a JSON array) compressed with gzip or zstandard.

A JSON array is parsed incrementally with the standard library's C scanner
(``json.JSONDecoder.raw_decode``) over a sliding text buffer: one element at a time, so memory
stays flat however long the array. The position after an element is the byte offset just past
it, so a resume seeks there and reads on from the ``,`` or ``]``.

Compressed files use the position in the *decompressed* stream. Seeking there decompresses and
discards what comes before (C speed, no JSON parsing): gzip and zstandard streams cannot be
entered in the middle. gzip comes from the standard library, zstandard from the ``zstandard``
package (``pip install zstandard``).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from datamill.core.fingerprint import file_identity
from datamill.core.inputs import InputSource, Row
from datamill.errors import ConfigError, InputFileError

CHUNK_BYTES = 1 << 20
_WHITESPACE = " \t\r\n"
_BOM = "\ufeff"


def compressed_source(path: Path) -> InputSource:
    """The source of a ``.gz`` / ``.zst`` file, by the extension under the compression one."""
    inner = Path(path.stem).suffix.lower()
    if inner in (".jsonl", ".ndjson"):
        return CompressedJsonlSource(path)
    if inner == ".json":
        return JsonArraySource(path) if holds_json_array(path) else CompressedJsonlSource(path)
    raise ConfigError(
        f"{path}: compressed {inner or 'files'} are not read as input; compress JSON lines "
        "(.jsonl.gz, .jsonl.zst) or a JSON array (.json.gz)"
    )


def holds_json_array(path: Path) -> bool:
    """Whether the first non-blank character of the (decompressed) file is ``[``."""
    with open_stream(path) as handle, translated_read_errors(path):
        head = handle.read(4096).decode("utf-8", errors="replace").lstrip(_BOM + _WHITESPACE)
    return head.startswith("[")


#: Compressed inputs up to this size are identified by their decompressed content.
DECOMPRESSED_IDENTITY_LIMIT = 64 << 20


def open_stream(path: Path) -> BinaryIO:
    """The file's bytes, decompressed by its extension; a missing file is an InputFileError."""
    if not path.is_file():
        raise InputFileError(f"input file {path} does not exist; check first_entry_file_name")
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if name.endswith((".zst", ".zstd")):
        try:
            import zstandard
        except ImportError:
            raise ConfigError(
                f"{path}: reading .zst files needs zstandard: pip install 'datamill[zstd]'"
            ) from None
        return io.BufferedReader(_ZstdFrames(path.open("rb"), zstandard.ZstdDecompressor()), CHUNK_BYTES)
    return path.open("rb")


class _ZstdFrames(io.RawIOBase):
    """Decompressed bytes of one or more zstandard frames, raising ``EOFError`` when the file
    ends inside a frame (``zstandard``'s stream reader would end quietly, losing the rows of a
    cut file)."""

    def __init__(self, raw: BinaryIO, context: Any) -> None:
        super().__init__()
        self._raw = raw
        self._context = context
        self._frame = context.decompressobj()
        self._fed = False
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if self._frame.eof:
                leftover = self._frame.unused_data
                self._frame, self._fed = self._context.decompressobj(), bool(leftover)
                self._pending = memoryview(self._frame.decompress(leftover) if leftover else b"")
                continue
            chunk = self._raw.read(CHUNK_BYTES)
            if not chunk:
                if self._fed:
                    raise EOFError("the file ends inside a zstandard frame")
                return 0
            self._fed = True
            self._pending = memoryview(self._frame.decompress(chunk))
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._raw.close()
        super().close()


@contextmanager
def translated_read_errors(path: Path) -> Iterator[None]:
    """Turn a damaged or truncated compressed stream into an InputFileError naming the file."""
    try:
        yield
    except (OSError, EOFError) as exc:
        raise InputFileError(
            f"{path}: cannot be read ({type(exc).__name__}: {exc}); is it damaged or cut short?"
        ) from None
    except Exception as exc:
        if type(exc).__module__.startswith("zstandard"):
            raise InputFileError(f"{path}: not a readable zstandard stream ({exc})") from None
        raise


def seek_stream(handle: BinaryIO, position: int) -> None:
    """Move to byte ``position``: a real seek where possible, else read and discard."""
    if handle.seekable():
        handle.seek(position)
        return
    remaining = position
    while remaining > 0:
        skipped = len(handle.read(min(remaining, CHUNK_BYTES)))
        if not skipped:
            return
        remaining -= skipped


class _FileSource(InputSource):
    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path

    def identity(self) -> dict[str, Any]:
        """The content's hash. A compressed file up to ``DECOMPRESSED_IDENTITY_LIMIT`` is hashed
        decompressed: gzip writes the time into its header, so compressing the same rows again
        must not look like new input; a larger one is hashed as it is on disk (reading it all
        at every start would cost more than the check is worth)."""
        compressed = self.path.suffix.lower() in (".gz", ".zst", ".zstd")
        if not compressed or self.path.stat().st_size > DECOMPRESSED_IDENTITY_LIMIT:
            return file_identity(self.path)
        digest = hashlib.sha256()
        size = 0
        with open_stream(self.path) as handle, translated_read_errors(self.path):
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                digest.update(chunk)
                size += len(chunk)
        return {"decompressed_size": size, "sha256": digest.hexdigest()}

    def exists(self) -> bool:
        return self.path.is_file()

    def count(self) -> int | None:
        return sum(1 for _ in self.iter_from(0))

    def _decode_error(self, what: str, offset: int, exc: Exception) -> InputFileError:
        where = "uncompressed byte" if self.path.suffix.lower() in (".gz", ".zst", ".zstd") else "byte"
        return InputFileError(
            f"{self.path}: the {what} at {where} {offset} is not valid JSON ({exc}); fix it and rerun — "
            "responses already received are reused, not paid again"
        )


class CompressedJsonlSource(_FileSource):
    """JSON lines in a gzip or zstandard file; positions are offsets in the decompressed bytes."""

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        with open_stream(self.path) as handle, translated_read_errors(self.path):
            seek_stream(handle, position)
            offset = position
            for line in handle:
                start = offset
                offset += len(line)
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except ValueError as exc:
                    raise self._decode_error("line", start, exc) from None
                if not isinstance(row, dict):
                    raise InputFileError(
                        f"{self.path}: the line at uncompressed byte {start} is a JSON "
                        f"{type(row).__name__}, not an object; each line must be one JSON object"
                    )
                yield row, offset

    def count(self) -> int | None:
        count, last = 0, b"\n"
        with open_stream(self.path) as handle, translated_read_errors(self.path):
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                count += chunk.count(b"\n")
                last = chunk[-1:]
        return count + (last != b"\n")


class JsonArraySource(_FileSource):
    """A JSON array of objects, streamed element by element; positions are byte offsets."""

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        with open_stream(self.path) as handle, translated_read_errors(self.path):
            seek_stream(handle, position)
            cursor = _TextCursor(handle, position)
            if position == 0:
                cursor.skip_whitespace()
                if cursor.peek() != "[":
                    raise InputFileError(
                        f"{self.path}: does not start with '['; a .json input must be a JSON array"
                    )
                cursor.advance()
                cursor.skip_whitespace()
                if cursor.peek() == "]":
                    return
                yield from self._elements(cursor, first=True)
            else:
                yield from self._elements(cursor, first=False)

    def _elements(self, cursor: _TextCursor, *, first: bool) -> Iterator[tuple[Row, int]]:
        """Elements from the cursor: right at one (``first``), or just after one."""
        while True:
            if not first:
                cursor.skip_whitespace()
                separator = cursor.peek()
                if separator == "]":
                    return
                if separator != ",":
                    found = "the end of the file" if separator is None else repr(separator)
                    raise InputFileError(
                        f"{self.path}: expected ',' or ']' at byte {cursor.byte_offset}, found {found}; "
                        "the JSON array is malformed or cut short"
                    )
                cursor.advance()
                cursor.skip_whitespace()
            first = False
            start = cursor.byte_offset
            if cursor.peek() != "{":
                found = "the end of the file" if cursor.peek() is None else repr(cursor.peek())
                raise InputFileError(
                    f"{self.path}: the array element at byte {start} starts with {found}, not '{{'; "
                    "a .json input must be an array of objects"
                )
            try:
                row = cursor.decode_value()
            except ValueError as exc:
                raise self._decode_error("array element", start, exc) from None
            yield row, cursor.byte_offset


class _TextCursor:
    """A read position in a UTF-8 stream, with the decoded text ahead of it buffered.

    ``byte_offset`` is the position in the stream of the character under the cursor, kept
    exact by counting the encoded length of what is consumed.
    """

    def __init__(self, handle: BinaryIO, byte_offset: int) -> None:
        self.handle = handle
        self.byte_offset = byte_offset
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._scan = json.JSONDecoder().raw_decode
        self._text = ""
        self._index = 0
        self._eof = False
        if byte_offset == 0 and self._fill() and self._text.startswith(_BOM):
            self._index = 1
            self.byte_offset = len(_BOM.encode())

    def peek(self) -> str | None:
        if self._index >= len(self._text) and not self._fill():
            return None
        return self._text[self._index]

    def advance(self) -> None:
        """Step over one ASCII character (whitespace or punctuation)."""
        self._index += 1
        self.byte_offset += 1

    def skip_whitespace(self) -> None:
        while (char := self.peek()) is not None and char in _WHITESPACE:
            self.advance()

    def decode_value(self) -> Any:
        """Decode the JSON value under the cursor, reading on while it is cut by the buffer end."""
        while True:
            try:
                value, end = self._scan(self._text, self._index)
            except ValueError:
                if self._fill():
                    continue
                raise
            self.byte_offset += len(self._text[self._index : end].encode("utf-8"))
            self._index = end
            return value

    def _fill(self) -> bool:
        """Append the next chunk to the buffer; False at the end of the stream."""
        if self._eof:
            return False
        raw = self.handle.read(CHUNK_BYTES)
        try:
            text = self._decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            raise InputFileError(
                f"{getattr(self.handle, 'name', 'input')}: not UTF-8 near byte {self.byte_offset} "
                f"({exc.reason}); re-encode the file as UTF-8"
            ) from None
        if not raw:
            self._eof = True
        if self._index > CHUNK_BYTES:
            self._text, self._index = self._text[self._index :], 0
        self._text += text
        return bool(raw) or bool(text)

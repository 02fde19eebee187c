"""Reading a large ``POST Import`` body without holding it: the request streams to a temporary
file, and this reads that file's JSON object key by key, decoding the ``fileData`` string's
Base64 block by block into another temporary file (:class:`~.importfile.FileData`). Every other
value is small and parsed with :func:`json.loads`. Memory stays flat whatever the file's size.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import tempfile
from typing import IO, Any

from .errors import SimError
from .importfile import FileData

BIG_KEY = "fileData"
_BLOCK = 64 * 1024
_WS = " \t\r\n"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class _Chars:
    def __init__(self, text: IO[str]):
        self._text, self._buf, self._pos = text, "", 0

    def peek(self) -> str:
        if self._pos >= len(self._buf):
            self._buf, self._pos = self._text.read(_BLOCK), 0
        return self._buf[self._pos] if self._buf else ""

    def take(self) -> str:
        c = self.peek()
        self._pos += bool(c)
        return c

    def skip_ws(self) -> str:
        while (c := self.peek()) and c in _WS:
            self._pos += 1
        return self.peek()

    def expect(self, wanted: str) -> None:
        if self.skip_ws() != wanted:
            raise ValueError(f"expected {wanted!r}")
        self._pos += 1

    def string_pieces(self):
        """The pieces of a JSON string whose opening quote was taken, escapes decoded."""
        while True:
            if not self.peek():
                raise ValueError("unterminated string")
            buf, pos = self._buf, self._pos
            quote, slash = buf.find('"', pos), buf.find("\\", pos)
            ends = [i for i in (quote, slash) if i >= 0]
            end = min(ends) if ends else len(buf)
            if end > pos:
                yield buf[pos:end]
            self._pos = end
            if not ends:
                continue
            if self.take() == '"':
                return
            esc = self.take()
            if esc == "u":
                code = "".join(self.take() for _ in range(4))
                yield chr(int(code, 16))
            elif esc in _ESCAPES:
                yield _ESCAPES[esc]
            else:
                raise ValueError("bad escape")

    def raw_value(self) -> str:
        """The JSON text of a small value (up to the ``,`` or ``}`` that ends it)."""
        out, depth = [], 0
        while True:
            c = self.peek()
            if not c:
                raise ValueError("unterminated value")
            if c == '"':
                self._pos += 1
                out.append(json.dumps("".join(self.string_pieces())))
                continue
            if depth == 0 and c in ",}":
                return "".join(out)
            depth += c in "[{"
            depth -= c in "]}"
            out.append(self.take())


def _decode_file_data(chars: _Chars) -> FileData:
    data = FileData(csv=tempfile.TemporaryFile(prefix="cheetah-sim-import-"))
    carry = ""
    for piece in chars.string_pieces():
        data.b64_length += len(piece)
        if data.failure is not None:
            continue
        carry += piece
        if len(carry) >= _BLOCK:
            cut = len(carry) - len(carry) % 4
            data.failure = _write(data, carry[:cut])
            carry = carry[cut:]
    if data.failure is None:
        data.failure = _write(data, carry)
    return data


def _write(data: FileData, b64: str) -> str | None:
    try:
        data.csv.write(base64.b64decode(b64, validate=True))
    except (binascii.Error, ValueError):
        return "fileData is not valid Base64."
    return None


def read_import_body(body: IO[bytes]) -> tuple[Any, FileData | None]:
    """The body's JSON object with ``fileData`` left out and decoded to disk instead (``None``
    when the body has no string ``fileData``); 400 when the body is not a JSON object."""
    body.seek(0)
    text = io.TextIOWrapper(body, encoding="utf-8")
    chars = _Chars(text)
    out: dict[str, Any] = {}
    data: FileData | None = None
    try:
        first = chars.skip_ws()
        if not first:
            raise SimError(400, "The request body must be a JSON object.")
        if first != "{":
            body.seek(0)
            return json.loads(body.read() or b"null"), None  # not an object: the body model says why
        chars.take()
        if chars.skip_ws() == "}":
            chars.take()
        else:
            while True:
                chars.expect('"')
                key = "".join(chars.string_pieces())
                chars.expect(":")
                if key == BIG_KEY and chars.skip_ws() == '"':
                    chars.take()
                    if data is not None:
                        data.csv.close()
                    data = _decode_file_data(chars)
                    out[key] = ""
                else:
                    chars.skip_ws()
                    out[key] = json.loads(chars.raw_value())
                sep = chars.skip_ws()
                chars.take()
                if sep == "}":
                    break
                if sep != ",":
                    raise ValueError("expected ',' or '}'")
        if chars.skip_ws():
            raise ValueError("trailing data")
    except (ValueError, UnicodeDecodeError):
        if data is not None:
            data.csv.close()
        raise SimError(400, "The request body is not valid JSON.") from None
    finally:
        text.detach()
    return out, data

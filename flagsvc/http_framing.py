"""Where an HTTP/1.1 request ends, judged from the bytes that have arrived so far: what the
buffering worker (http_worker.py) asks before it hands a request to a thread. Only the
framing (Content-Length, chunked) is read here; gunicorn's parser checks everything else."""

from __future__ import annotations

import re
from collections.abc import Callable

from gunicorn.http import body as gunicorn_body

MAX_HEADER_BYTES = 64 * 1024  # request line and headers, larger: 431 (gunicorn's own limits
#                               are checked on what arrived, by its parser)


class Framing:
    """How far the request at the start of a buffer has arrived. `step(buf)` returns the
    offset where it ends, `None` while incomplete, `HAND_OVER` when the thread must take
    it as it is (a framing gunicorn's parser rejects: those are answered 400 from what
    arrived), `TOO_LARGE` for headers over MAX_HEADER_BYTES, `BAD` for a chunk-size line
    that never ends and `BODY_TOO_LARGE` for a body over the limit of its route: a
    Content-Length over it (refused from the headers, its body never waited for, never
    handed to a thread unread) or a chunked body whose next announced chunk would take it
    over (refused before that chunk's data is waited for, let alone buffered), and
    `BARE_LF` for a request or chunk line ending in LF without CR (gunicorn's parser refuses
    those too; waiting for a CRLF that never comes would end in a 408).

    The body limit is `body_limit`, or `limit_for(request target)` once the request line
    has arrived (http_limits.BodyLimits.for_path: a limit per route). A complete chunked
    request is given to the thread decoded (`decoded(buf, end)`): gunicorn's chunk reader
    copies the rest of the body after every chunk (60,000 one-byte chunks took 33 s)."""

    HAND_OVER = -1
    TOO_LARGE = -2
    BAD = -3
    BODY_TOO_LARGE = -4
    BARE_LF = -5

    def __init__(self, body_limit: int = 0,
                 limit_for: Callable[[str], int] | None = None) -> None:
        self.body_limit = body_limit
        self.limit_for = limit_for
        self.header_end: int | None = None
        self.length = 0  # body bytes announced (Content-Length)
        self.chunked = False
        self.pos = 0  # chunked: where the next chunk's size line starts
        self.body = 0  # chunked: data bytes of the complete chunks
        self.pieces: list[tuple[int, int]] = []  # chunked: where each chunk's data lies
        self.te_lines: list[int] = []  # chunked: header lines (by index) to drop, decoded
        self.decode = False  # chunked and nothing else: decoded before the thread's turn
        self.head_start = 0  # where the request line starts (empty lines before it)
        self.wants_continue = False  # headers said Expect: 100-continue and a body follows
        self.scanned = 0  # headers: searched this far for their end (a byte at a time is O(1))

    def step(self, buf: bytearray) -> int | None:
        if self.header_end is None:
            found = self._headers(buf)
            if found is not None:
                return found
            if self.header_end is None:
                return None
        if self.chunked:
            return self._chunks(buf)
        end = self.header_end + self.length
        return end if len(buf) >= end else None

    def _headers(self, buf: bytearray) -> int | None:
        start = 0
        while buf.startswith(b"\r\n", start):  # empty lines before a request are ignored
            start += 2
        end = buf.find(b"\r\n\r\n", max(start, self.scanned - 3))
        if _BARE_LF.search(buf, max(start, self.scanned - 1), len(buf) if end < 0 else end):
            return self.BARE_LF
        if end < 0:
            self.scanned = len(buf)
            return self.TOO_LARGE if len(buf) > MAX_HEADER_BYTES else None
        if end - start > MAX_HEADER_BYTES:  # arrived whole, but over the bound all the same
            return self.TOO_LARGE
        self.header_end = end + 4
        self.head_start = start
        lines = bytes(buf[start:end]).split(b"\r\n")
        if self.limit_for is not None:
            target = lines[0].split(b" ")
            self.body_limit = self.limit_for(target[1].decode("latin-1")
                                             if len(target) > 1 else "/")
        fields: dict[bytes, list[bytes]] = {}
        exact_te = True  # every Transfer-Encoding field is spelt as gunicorn takes it
        for index, line in enumerate(lines[1:], 1):
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            fields.setdefault(key, []).append(value.strip())
            if key == b"transfer-encoding":
                self.te_lines.append(index)
                exact_te = exact_te and name.lower() == key
        lengths = fields.get(b"content-length", [])
        codings = fields.get(b"transfer-encoding", [])
        if codings:
            last = b",".join(codings).split(b",")[-1].strip().lower()
            if lengths or last != b"chunked":
                return self.HAND_OVER  # ambiguous framing: gunicorn refuses it (400)
            # decoded here only when chunked is the one coding, spelt as gunicorn takes it
            self.decode = exact_te and len(b",".join(codings).split(b",")) == 1
            self.chunked = True
            self.pos = self.header_end
        elif lengths:
            if len(lengths) != 1 or not lengths[0].isdigit():
                return self.HAND_OVER  # gunicorn refuses it (400)
            self.length = int(lengths[0])
            if self.length > self.body_limit:
                return self.BODY_TOO_LARGE  # refused from its headers, never waited for
        http11 = lines[0].rstrip().endswith(b"/1.1")
        expect = b",".join(fields.get(b"expect", [])).lower().split(b",")
        self.wants_continue = (http11 and b"100-continue" in [e.strip() for e in expect]
                               and (self.chunked or self.length > 0))
        return None

    def _chunks(self, buf: bytearray) -> int | None:
        while True:
            plain = _PLAIN_SIZE.match(buf, self.pos)  # the usual line: hex digits, CRLF
            if plain is not None:
                line_end, size = plain.end() - 2, int(plain.group(1), 16)
            else:
                line_end = buf.find(b"\r\n", self.pos)
                if _BARE_LF.search(buf, self.pos, len(buf) if line_end < 0 else line_end):
                    return self.BARE_LF
                if line_end < 0:  # a chunk-size line is a few bytes; gunicorn waits for more
                    return self.BAD if len(buf) - self.pos > 1024 else None
                found = _chunk_size(bytes(buf[self.pos:line_end]))
                if found is None:
                    return self.HAND_OVER  # gunicorn refuses it (400)
                size = found
            if size == 0:  # the last chunk, then trailer fields, then an empty line
                if buf.startswith(b"\r\n", line_end + 2):
                    return line_end + 4
                end = buf.find(b"\r\n\r\n", line_end + 2)
                if _BARE_LF.search(buf, line_end + 2, len(buf) if end < 0 else end):
                    return self.BARE_LF
                if end >= 0:
                    return end + 4
                return self.TOO_LARGE if len(buf) - line_end > MAX_HEADER_BYTES else None
            if self.body + size > self.body_limit:
                return self.BODY_TOO_LARGE  # never wait for (nor hold) data over the limit
            data_end = line_end + 2 + size
            if len(buf) < data_end + 2:
                return None
            if buf[data_end:data_end + 2] != b"\r\n":
                return self.HAND_OVER
            self.body += size
            self.pieces.append((line_end + 2, data_end))
            self.pos = data_end + 2

    def decoded(self, buf: bytearray, end: int) -> bytes:
        """The request of buf[:end] as the thread's parser gets it: a chunked one with its
        body decoded and a Content-Length instead of Transfer-Encoding (trailer fields
        dropped), in one pass; what follows `end` (a pipelined request) kept as it is."""
        if not self.decode:
            return bytes(buf)
        assert self.header_end is not None
        head = bytes(buf[self.head_start:self.header_end - 4]).split(b"\r\n")
        for index in reversed(self.te_lines):
            del head[index]
        head.append(b"Content-Length: %d" % self.body)
        with memoryview(buf) as view:
            body = b"".join([view[s:e] for s, e in self.pieces])
            rest = bytes(view[end:])
        return b"\r\n".join(head) + b"\r\n\r\n" + body + rest


_BARE_LF = re.compile(rb"(?<!\r)\n")
_PLAIN_SIZE = re.compile(rb"([0-9a-fA-F]{1,16})\r\n")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# gunicorn's grammar of chunk extensions, where its version has one (else: no controls)
_CHUNK_EXT: re.Pattern[bytes] | None = getattr(gunicorn_body, "CHUNK_EXT_RE", None)


def _chunk_size(line: bytes) -> int | None:
    """A chunk-size line's size as gunicorn's parser reads it (hex digits only, blanks only
    before a `;` extension, the extension's grammar), None where it refuses it: int(_, 16)
    alone takes "0x5", "+5", " 5" and "1_0"."""
    size, semicolon, extension = line.partition(b";")
    if semicolon:
        size = size.rstrip(b" \t")
    if not size or any(byte not in _HEX for byte in size):
        return None
    if semicolon and not _extension_ok(b";" + extension):
        return None
    return int(size, 16)


def _extension_ok(extension: bytes) -> bool:
    if _CHUNK_EXT is not None:
        return _CHUNK_EXT.fullmatch(extension) is not None
    return not any(byte < 0x20 and byte != 0x09 or byte == 0x7F for byte in extension)

"""Where an HTTP/1.1 request ends, judged from the bytes that have arrived so far: what the
buffering worker (http_worker.py) asks before it hands a request to a thread. Only the
framing (Content-Length, chunked) is read here; gunicorn's parser checks everything else."""

from __future__ import annotations

MAX_HEADER_BYTES = 64 * 1024  # request line and headers, larger: 431 (gunicorn's own limits
#                               are checked on what arrived, by its parser)


class Framing:
    """How far the request at the start of a buffer has arrived. `step(buf)` returns the
    offset where it ends, `None` while incomplete, `HAND_OVER` when the thread must take
    it as it is (a body announced over the limit — refused from its headers — or a framing
    gunicorn's parser rejects: those are answered 400 from what arrived), `TOO_LARGE` for
    headers over MAX_HEADER_BYTES and `BAD` for a chunk-size line that never ends."""

    HAND_OVER = -1
    TOO_LARGE = -2
    BAD = -3

    def __init__(self, body_limit: int) -> None:
        self.body_limit = body_limit
        self.header_end: int | None = None
        self.length = 0  # body bytes announced (Content-Length)
        self.chunked = False
        self.pos = 0  # chunked: where the next chunk's size line starts
        self.body = 0  # chunked: data bytes of the complete chunks
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
        if end < 0:
            self.scanned = len(buf)
            return self.TOO_LARGE if len(buf) > MAX_HEADER_BYTES else None
        self.header_end = end + 4
        lines = bytes(buf[start:end]).split(b"\r\n")
        fields: dict[bytes, list[bytes]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields.setdefault(name.strip().lower(), []).append(value.strip())
        lengths = fields.get(b"content-length", [])
        codings = fields.get(b"transfer-encoding", [])
        if codings:
            last = b",".join(codings).split(b",")[-1].strip().lower()
            if lengths or last != b"chunked":
                return self.HAND_OVER  # ambiguous framing: gunicorn refuses it (400)
            self.chunked = True
            self.pos = self.header_end
        elif lengths:
            if len(lengths) != 1 or not lengths[0].isdigit():
                return self.HAND_OVER  # gunicorn refuses it (400)
            self.length = int(lengths[0])
            if self.length > self.body_limit:
                return self.HAND_OVER  # refused from its headers (413), never waited for
        http11 = lines[0].rstrip().endswith(b"/1.1")
        expect = b",".join(fields.get(b"expect", [])).lower()
        self.wants_continue = (http11 and b"100-continue" in expect
                               and (self.chunked or self.length > 0))
        return None

    def _chunks(self, buf: bytearray) -> int | None:
        while True:
            line_end = buf.find(b"\r\n", self.pos)
            if line_end < 0:  # a chunk-size line is a few bytes; gunicorn would wait for more
                return self.BAD if len(buf) - self.pos > 1024 else None
            size_text = bytes(buf[self.pos:line_end]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                return self.HAND_OVER  # gunicorn refuses it (400)
            if size == 0:  # the last chunk, then trailer fields, then an empty line
                if buf.startswith(b"\r\n", line_end + 2):
                    return line_end + 4
                end = buf.find(b"\r\n\r\n", line_end + 2)
                if end >= 0:
                    return end + 4
                return self.TOO_LARGE if len(buf) - line_end > MAX_HEADER_BYTES else None
            data_end = line_end + 2 + size
            if len(buf) < data_end + 2:
                return None
            if buf[data_end:data_end + 2] != b"\r\n":
                return self.HAND_OVER
            self.body += size
            self.pos = data_end + 2
            if self.body > self.body_limit:
                return self.HAND_OVER  # the app reads past its limit from memory: 413

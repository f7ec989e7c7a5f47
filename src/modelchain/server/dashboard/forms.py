"""What the dashboard's forms send: whole numbers and times from fields, the
page to return to after login, and multipart forms read as they stream in
(python-multipart's parser), files hashed on the way and never spooled."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ...core.times import parse_time
from ...errors import MalformedError, UsageError
from ..config import MAX_INT

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = [
    "MultipartForm",
    "Upload",
    "int_field",
    "local_next",
    "read_multipart",
    "time_field",
]

FIELD_MAX = 16 * 1024  # bytes of one plain form field
CHUNK = 1 << 20  # upload bytes handed to a worker thread at a time


def int_field(text: str | None, what: str, minimum: int = 0) -> int:
    digits = (text or "").strip()
    # Checked before int(): beyond 4300 digits int() itself refuses (ValueError),
    # and beyond MAX_INT the store would overflow.
    if not (digits.isascii() and digits.lstrip("-").isdigit()) or len(digits) > 20:
        shown = digits if len(digits) <= 40 else digits[:40] + "…"
        raise UsageError(f"{what} must be a whole number up to {MAX_INT}, not {shown!r}")
    value = int(digits)
    if value < minimum:
        raise UsageError(f"{what} must be at least {minimum}")
    if value > MAX_INT:
        raise UsageError(f"{what} must be at most {MAX_INT}")
    return value


def time_field(text: str, what: str, *, end: bool = False) -> int:
    """A time from a form: a date, an RFC 3339 time or milliseconds."""
    if len(text) > 40:
        raise UsageError(f"{what} is a date, a time or milliseconds, not {text[:40]!r}…")
    ms = parse_time(text, end=end)
    if not 0 <= ms <= MAX_INT:
        raise UsageError(f"{what} is out of range")
    return ms


def local_next(value: str | None) -> str:
    # Only ever redirect inside the dashboard: an open redirect after login
    # would hand a phishing page the user's trust.
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


# -- streamed multipart forms -------------------------------------------------------


@dataclass
class Upload:
    filename: str
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)
    head: bytearray = field(default_factory=bytearray)


class MultipartForm:
    """A multipart form read as it streams in. Files are hashed on the way and
    only their first ``keep`` bytes kept: uploaded model weights are never
    spooled to the server's disk nor held whole in memory."""

    def __init__(self, boundary: bytes, keep: int) -> None:
        from python_multipart.multipart import MultipartParser

        self.fields: dict[str, str] = {}
        self.files: dict[str, Upload] = {}
        self._keep = keep
        self._hname = bytearray()
        self._hvalue = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name = ""
        self._field: bytearray | None = None
        self._file: Upload | None = None
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def _part_begin(self) -> None:
        self._headers = {}
        self._field, self._file = None, None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._hname.decode("latin-1").lower()] = bytes(self._hvalue)
        self._hname, self._hvalue = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._headers.get("content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is not None:
            self._file = Upload(filename.decode("utf-8", "replace"))
            self.files[self._name] = self._file
        else:
            if len(self.fields) >= 32:
                raise MalformedError("too many form fields")
            self._field = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._file is not None:
            self._file.size += len(chunk)
            self._file.sha256.update(chunk)
            room = self._keep + 1 - len(self._file.head)
            if room > 0:
                self._file.head += chunk[:room]
        elif self._field is not None:
            self._field += chunk
            if len(self._field) > FIELD_MAX:
                raise MalformedError(f"form field {self._name!r} is over {FIELD_MAX} bytes")

    def _part_end(self) -> None:
        if self._field is not None:
            self.fields[self._name] = self._field.decode("utf-8", "replace")

    def write(self, data: bytes) -> None:
        from python_multipart.exceptions import MultipartParseError

        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise MalformedError(f"the form is not valid multipart: {exc}") from exc

    def finish(self) -> None:
        self._parser.finalize()


async def read_multipart(request: Request, keep: int) -> MultipartForm:
    from python_multipart.multipart import parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise MalformedError("this form is sent as multipart/form-data")
    form = MultipartForm(boundary, keep)
    pending = bytearray()
    # The body's size is capped by the server's Limits middleware; hashing runs
    # in a worker thread (hashlib releases the GIL) so the event loop stays free.
    async for chunk in request.stream():
        pending += chunk
        if len(pending) >= CHUNK:
            await run_in_threadpool(form.write, bytes(pending))
            pending = bytearray()
    if pending:
        await run_in_threadpool(form.write, bytes(pending))
    form.finish()
    return form

"""What a classify request carries: the image bytes (raw body or a multipart file) within ``max_bytes``, and
its options (``topk``, ``scales``, ``flip``) from the query string or multipart fields. Every refusal is a
``Refused`` with an HTTP status, an error kind for the metrics and one sentence."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request


class Refused(Exception):
    def __init__(self, status: int, kind: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.kind, self.retry_after = status, kind, retry_after


@dataclass
class Options:
    topk: int
    scales: tuple[int, ...]
    flip: bool


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused (413) as soon as it passes ``max_bytes``, before it is all received."""
    too_large = Refused(413, "too_large", f"the request body is over the limit of {max_bytes:,} bytes")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def image_and_fields(request: Request, body: bytes, max_bytes: int) -> tuple[bytes, dict]:
    """The image bytes and the form fields: a multipart body's first file (field ``image`` preferred), or
    the raw body with no fields."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body, {}
    sent = [False]

    async def replay():
        if sent[0]:
            return {"type": "http.disconnect"}
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=4, max_fields=16, max_part_size=max_bytes)
    except (MultiPartException, HTTPException) as e:
        raise Refused(400, "bad_request", f"the multipart body cannot be read: {getattr(e, 'detail', e)}") from None
    files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    files.sort(key=lambda f: f is not form.get("image"))
    if not files:
        raise Refused(400, "bad_request", "the multipart body has no file: send the image as the field 'image'")
    data = await files[0].read()
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    await form.close()
    return data, fields


def parse_options(query, fields: dict, default_topk: int, default_flip: bool) -> Options:
    """``topk=N``, ``scales=224,256``, ``flip=true`` from the query string or the form; one sentence if bad."""
    get = lambda name: query.get(name, fields.get(name))  # noqa: E731
    topk = _int(get("topk"), "topk") if get("topk") not in (None, "") else default_topk
    if topk < 1:
        raise Refused(400, "bad_request", f"topk must be at least 1, got {topk}")
    text = get("scales") or ""
    scales = tuple(_int(s, "scales") for s in text.split(",") if s.strip())
    if len(scales) > 4:
        raise Refused(400, "bad_request", f"at most 4 test scales per request, got {len(scales)}")
    flip = get("flip")
    if flip in (None, ""):
        flip = default_flip
    elif flip.lower() in ("1", "true", "yes", "on"):
        flip = True
    elif flip.lower() in ("0", "false", "no", "off"):
        flip = False
    else:
        raise Refused(400, "bad_request", f"flip must be true or false, got '{flip}'")
    return Options(topk, scales, flip)


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise Refused(400, "bad_request", f"{name} must be a whole number (scales: comma-separated), got '{text}'") from None

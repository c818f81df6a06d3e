"""Request bodies are refused once they exceed their limit, while they stream in.

Trusting Content-Length alone let a chunked body (which has none) or a lying one be read and parsed whole before
the size check: an 80 MB JSON batch cost the API 430 MB. This middleware counts the bytes as the server receives
them and stops at the limit, so an oversized request costs at most the limit, whatever it claims or streams.

Written here rather than taken from Starlette's RequestBodyLimitMiddleware: that one answers in plain text (every
answer here is JSON in one error format) and takes its limit per route when the routes are declared, while these
limits come from the settings the app is created with. It is plain ASGI (not BaseHTTPMiddleware), so it wraps
`receive` and `send` without buffering anything itself.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ctax.config import Settings
from ctax.errors import PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Room for the multipart boundaries, part headers and JSON punctuation around what the field limits allow.
ENVELOPE_BYTES = 64 * 1024
# Taxonomy files: what POST /v1/labels/import reads (routes/labels.py refuses a larger file with its own message).
MAX_TAXONOMY_BYTES = 5 * 1024 * 1024
# The worst a character costs in JSON: an astral-plane character escaped as a surrogate pair, "\ud83d\ude00".
JSON_BYTES_PER_CHAR = 12


class BodyTooLarge(PayloadTooLarge):
    """Raised from inside `receive`: the app's handler for domain errors answers it as a JSON 413."""


def single_creative_bytes(settings: Settings) -> int:
    """The largest body one creative can need within the field limits: its image base64-encoded, its texts and
    metadata at their worst JSON escaping."""
    image = (settings.max_image_bytes * 4) // 3 + 4
    return image + JSON_BYTES_PER_CHAR * (settings.max_text_chars + settings.max_metadata_bytes) + ENVELOPE_BYTES


def limit_for(settings: Settings) -> Callable[[str], int]:
    """The body limit of each path: creatives and batches by what they may carry, everything else small."""
    single = single_creative_bytes(settings)
    by_path = {
        "/v1/creatives": single,
        "/v1/creatives/batch": settings.max_batch_bytes,
        "/v1/search": single,  # a query may carry one creative's image
        "/v1/labels/import": MAX_TAXONOMY_BYTES + ENVELOPE_BYTES,
    }

    def limit(path: str) -> int:
        return by_path.get(path.rstrip("/") or "/", settings.max_request_bytes)

    return limit


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, f"request body is {declared} bytes; the limit here is {limit} bytes", limit)
            return
        received = 0
        exceeded = started = answered = False

        async def limited() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(f"request body is larger than the limit here, {limit} bytes", limit=limit)
            return message

        async def checked_send(message: Message) -> None:
            # Whatever caught the BodyTooLarge on its way up (FastAPI turns any error while it reads a body into a
            # 400, a form parser into its own), the client is told the body was too large: that is what happened.
            nonlocal answered, started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
                if exceeded and message.get("status") != 413:
                    answered = True
                    await _refuse(send, f"request body is larger than the limit here, {limit} bytes", limit)
                    return
                if exceeded:
                    # Closing the connection stops the client sending: kept alive, the server would read (and
                    # discard) the rest of the body to find the next request.
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited, checked_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(send, f"request body is larger than the limit here, {limit} bytes", limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


async def _refuse(send: Send, message: str, limit: int) -> None:
    body = json.dumps(PayloadTooLarge(message, limit=limit).to_dict()).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})

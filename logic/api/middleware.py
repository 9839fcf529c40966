"""ASGI middleware: the API key on every request, and a cap on request bodies."""

from __future__ import annotations

import json

from .security import key_matches


class RequireKey:
    """Every request must carry the key (docs and schema included) when one is set."""

    def __init__(self, app, api_key: str):
        self.app, self.api_key = app, api_key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if key_matches(headers, self.api_key):
            return await self.app(scope, receive, send)
        await _respond(send, 401, "This API needs its key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'.",
                       [(b"www-authenticate", b'Basic realm="atelier"')])


class LimitBody:
    """Bodies over ``max_bytes`` get 413 before any handler sees them (declared or streamed)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._too_large(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(send)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send):
        await _respond(send, 413, f"The request is larger than {self.max_bytes // (1024 * 1024)} MiB: "
                                  "send smaller images.")


async def _respond(send, status: int, detail: str, headers=()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})

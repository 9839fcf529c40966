"""The HTTP API (``python -m logic serve``): Atelier's own /api/v1 for every engine, and an
AUTOMATIC1111-compatible /sdapi/v1 subset, both on the shared queue (``logic.queue``).

FastAPI because its pydantic request/response models are the one definition of the schema: the
same classes validate requests, shape responses and produce the OpenAPI schema and the /docs page.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from .service import ApiConfig, ApiService

__all__ = ["ApiConfig", "create_app"]


def create_app(config: ApiConfig):
    """The ASGI app: routes, the key check, the body limit and the trusted hosts."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from . import native, sdapi
    from .middleware import LimitBody, RequireKey
    from .security import is_loopback

    service = ApiService(config)

    @asynccontextmanager
    async def lifespan(app):
        yield
        service.close()

    app = FastAPI(title="Atelier API", version="1", lifespan=lifespan,
                  description="Runs of every engine through the shared queue; an AUTOMATIC1111-compatible subset "
                              "under /sdapi/v1. See docs/api.md.")
    app.state.service = service
    app.include_router(native.router(service))
    app.include_router(sdapi.router(service))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc):
        # Native routes answer a malformed request like a bad setting: 400 and one sentence.
        status = 400 if request.url.path.startswith("/api/") else 422
        return JSONResponse({"detail": native.one_sentence(request, exc)}, status_code=status)

    if is_loopback(config.host):
        # DNS rebinding: a web page cannot reach a loopback API under a name it controls.
        app.add_middleware(TrustedHostMiddleware,
                           allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1", "testserver"])
    app.add_middleware(LimitBody, max_bytes=config.max_body_bytes)
    if config.api_key:
        app.add_middleware(RequireKey, api_key=config.api_key)
    return app

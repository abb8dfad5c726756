"""Every error the API returns has the contract's body: never a 500 page, never a stack trace."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from loguru import logger
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.responses import JsonResponse
from shared.domain.untrusted import clip

#: Seconds a client should wait after a 503 caused by Redis or PostgreSQL not answering.
BACKEND_RETRY_AFTER_S = 1
#: Redis or PostgreSQL did not answer (or the connection to them broke): 503, not the client's fault.
BACKEND_ERRORS: tuple[type[Exception], ...] = (RedisError, DBAPIError, OSError)
#: Longest error message, and most entries in `details`, one answer carries.
MAX_MESSAGE_CHARS = 500
MAX_DETAILS = 20


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    # Messages may quote the client's input: never more than a few hundred characters of it.
    return {"success": False, "error": code, "message": clip(message, MAX_MESSAGE_CHARS), "details": details or []}


def validation_details(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per error (field, code, message), without pydantic's `input`: an echo of what was sent
    (up to the whole body) that the client already has. A field name may be the client's own (an unknown
    field), so it is clipped too; so is the list, which a body of many unknown fields would make long."""
    details = []
    for error in errors[:MAX_DETAILS]:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
        field = clip(".".join(location)) if location else None
        details.append({"field": field, "code": error.get("type"), "message": clip(error.get("msg", ""), 200)})
    return details


def from_validation(exc: ValidationError | RequestValidationError) -> ApiError:
    details = validation_details(exc.errors())
    code = details[0]["code"] if len(details) == 1 and details[0]["code"] else "validation_error"
    message = (
        "; ".join(f"{d['field']}: {d['message']}" if d["field"] else str(d["message"]) for d in details)
        or "invalid request"
    )
    return ApiError(400, code, message, details)


def response_for(exc: Exception, method: str, path: str) -> JsonResponse:
    """The answer to an exception a route raised: one mapping for FastAPI's handlers and the direct routes."""
    if isinstance(exc, ApiError):
        return JsonResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers)
    if isinstance(exc, RequestValidationError):
        error = from_validation(exc)
        return JsonResponse(error_body(error.code, error.message, error.details), 400)
    if isinstance(exc, StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JsonResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)
    if isinstance(exc, DataError):
        # PostgreSQL answered, and refused a value the client sent (a NUL in a filter, say): the client's error.
        logger.info("{} {}: PostgreSQL refused a parameter: {}", method, path, exc.orig)
        return JsonResponse(error_body("invalid_parameter", "a parameter holds a value that cannot be stored"), 400)
    if isinstance(exc, BACKEND_ERRORS):
        logger.warning("{} {}: a backing store did not answer: {!r}", method, path, exc)
        return JsonResponse(
            error_body("unavailable", "a backing store is not answering; retry shortly"),
            503,
            headers={"Retry-After": str(BACKEND_RETRY_AFTER_S)},
        )
    logger.opt(exception=exc).error("unhandled error on {} {}", method, path)
    return JsonResponse(error_body("internal_error", "the server could not handle this request"), 500)


def install(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JsonResponse:
        return response_for(exc, request.method, request.url.path)

    # Starlette picks a handler by the exception's class; every one of them answers through response_for.
    for handled in (ApiError, RequestValidationError, StarletteHTTPException, DataError, *BACKEND_ERRORS, Exception):
        app.add_exception_handler(handled, handle)

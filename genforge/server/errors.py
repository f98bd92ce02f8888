"""The one error shape every failing request gets: {"error": {"message", "type", "param", "code"}}.

Route code raises `APIError`; the handlers below turn it, FastAPI's validation errors (400, never
a bare 422) and Starlette's 404/405 into that shape.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 405: "invalid_request_error", 408: "timeout_error", 413: "invalid_request_error",
         429: "rate_limit_error", 503: "service_unavailable", 504: "timeout_error"}


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "server_error"), "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def _validation_message(err: dict) -> tuple[str, str | None]:
    if err.get("type") == "json_invalid":  # its loc is the character offset, not a parameter
        pos = [p for p in err.get("loc", ()) if isinstance(p, int)]
        where = f" at character {pos[0]}" if pos else ""
        return f"the request body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')}{where})", None
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    # drop pydantic's union-branch names (e.g. 'str', 'list[int]') from the parameter path
    param = ".".join(p for p in loc if not any(c in p for c in "[]") and p not in ("str", "int", "float")) or None
    if err.get("type") == "extra_forbidden":
        return f"{param}: this parameter is not supported by genforge", param
    if err.get("type") in ("json_invalid", "model_attributes_type", "dict_type") and param is None:
        return f"the request body must be a JSON object ({err.get('msg', '')})", None
    return f"{param or 'body'}: {err.get('msg', 'invalid value')}", param


def _most_specific(errors: list[dict]) -> dict:
    """Of the first parameter's errors (one per branch of a union like `str | list[str]`), the one that
    says what is wrong with the value sent: the deepest, then not a mere type mismatch ([] -> too short)."""
    first = tuple(errors[0].get("loc", ()))[:2]  # ("body", param)
    same = [e for e in errors if tuple(e.get("loc", ()))[:2] == first]
    return max(same, key=lambda e: (len(e.get("loc", ())), not str(e.get("type", "")).endswith("_type")))


def install(app: FastAPI):
    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return error_response(e.status, e.message, e.param, e.code, e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        errors = e.errors()
        message, param = _validation_message(_most_specific(errors)) if errors else ("invalid request", None)
        return error_response(400, message, param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        message = e.detail if isinstance(e.detail, str) else str(e.detail)
        if e.status_code == 404:
            message = f"{request.method} {request.url.path}: no such route"
        return error_response(e.status_code, message, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):  # a bug: still answer in the API's shape
        return error_response(500, f"internal error: {type(e).__name__}: {e}", code="internal_error")

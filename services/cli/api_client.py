"""Talking to the API over HTTP (the commands that do not touch Redis: submit, watch, orders, quotes, health,
cancel). Every failure becomes a CliError with the API's own message and a documented exit code."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import typer

from services.cli.errors import CliError, ExitCode
from services.cli.output import fail
from shared.settings import redacted

T = TypeVar("T")

#: How long one HTTP request may take before the command gives up (exit code TIMEOUT).
HTTP_TIMEOUT_S = 10.0
#: How long connecting (HTTP or WebSocket) may take.
CONNECT_TIMEOUT_S = 5.0
DEFAULT_API_PORT = 8000

ApiUrlOption = Annotated[
    str | None,
    typer.Option(
        "--api",
        envvar="API_URL",
        metavar="URL",
        show_default=False,
        help="The API's base URL. Default: $API_URL, else http://127.0.0.1:$API_PORT (8000).",
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="ORDER_ENGINE_API_KEY",
        show_default=False,
        help="API key, sent as Authorization: Bearer (needed when the API runs with AUTH_ENABLED). "
        "Prefer the environment variable: a command line is visible to other users.",
    ),
]


def default_api_url() -> str:
    return os.environ.get("API_URL") or f"http://127.0.0.1:{os.environ.get('API_PORT') or DEFAULT_API_PORT}"


def _status_exit_code(status: int) -> ExitCode:
    if status == 404:
        return ExitCode.NOT_FOUND
    if status >= 500:
        return ExitCode.UNAVAILABLE
    return ExitCode.FAILED


class ApiClient:
    """A thin synchronous client: JSON in, JSON out, errors as CliErrors."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout_s: float = HTTP_TIMEOUT_S):
        url = (base_url or default_api_url()).strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(
                f"--api wants an http(s) URL like http://127.0.0.1:8000, got {redacted(url)!r}", ExitCode.USAGE, "usage"
            )
        self.base_url = url
        self.shown_url = redacted(url)
        self.api_key = api_key.strip() if api_key else None
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=url,
            headers=self.auth_headers(),
            timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
            follow_redirects=False,
        )

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def ws_url(self, path: str) -> str:
        """`path` on the API's WebSocket side: http → ws, https → wss, any base path kept."""
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        base_path = parts.path.rstrip("/")
        path, _, query = path.partition("?")
        return urlunsplit((scheme, parts.netloc, base_path + path, query, ""))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        what: str | None = None,
        ok_statuses: tuple[int, ...] = (),
    ) -> httpx.Response:
        """The response (2xx, or one of `ok_statuses`); anything else raises a CliError with the API's message,
        after `what` (default: the method and path; "" for the message alone)."""
        content = None if json is None else orjson.dumps(json)
        send_headers = {**(headers or {}), **({"Content-Type": "application/json"} if content is not None else {})}
        query = {key: value for key, value in (params or {}).items() if value is not None}
        try:
            response = self._http.request(method, path, content=content, params=query, headers=send_headers)
        except httpx.TimeoutException:
            raise CliError(
                f"the API at {self.shown_url} did not answer {method} {path} within {self.timeout_s:g} s",
                ExitCode.TIMEOUT,
                "timeout",
            ) from None
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None
        if response.is_success or response.status_code in ok_statuses:
            return response
        raise self.refusal(response, f"{method} {path}" if what is None else what)

    def unreachable(self, exc: BaseException) -> CliError:
        reason = str(exc) or type(exc).__name__
        return CliError(f"cannot reach the API at {self.shown_url}: {reason}", ExitCode.UNAVAILABLE, "unavailable")

    @staticmethod
    def refusal(response: httpx.Response, what: str) -> CliError:
        """The API's own error body (`error`, `message`) as a CliError; a non-JSON body is shown briefly."""
        status = response.status_code
        code, message = f"http_{status}", response.text.strip()[:300] or response.reason_phrase
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            code, message = str(body.get("error") or code), str(body["message"])
        sentence = f"{what + ': ' if what else ''}{message} (HTTP {status} {code})"
        if retry_after := response.headers.get("Retry-After"):
            sentence += f"; retry after {retry_after} s"
        details = body.get("details") if isinstance(body, dict) and isinstance(body.get("details"), list) else None
        return CliError(sentence, _status_exit_code(status), code, status=status, details=details)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, json=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs).json()


def run_api_command(
    as_json: bool,
    api: str | None,
    api_key: str | None,
    work: Callable[[ApiClient], T],
    *,
    one_line: bool = False,
) -> T:
    """Run `work(client)`; a CliError is reported (stderr, and stdout as JSON with --json) and exits."""
    try:
        with ApiClient(api, api_key) as client:
            return work(client)
    except CliError as exc:
        raise fail(exc, as_json, one_line=one_line) from None

"""Which browser requests the API answers: pages of other sites may not change state, and no page may reach
the API by a name that is not its own.

Two browser attacks, neither of which needs a key while AUTH_ENABLED is off (the local default):
- cross-site requests: a page on another site POSTs an order, DELETEs one, or opens a WebSocket (which no
  CORS rule protects) to http://127.0.0.1:8000 from the visitor's browser;
- DNS rebinding: a page whose name the attacker re-points to 127.0.0.1 is, for the browser, the same origin
  as the API, so it may read every answer. Its requests carry the attacker's name in `Host`.

Browsers say who they are: `Origin` on every WebSocket handshake and every non-GET request, and
`Sec-Fetch-Site` on every request of current ones. A request with neither comes from curl, the CLI, locust
or a test, which choose their own headers and reach the port without any browser; it is not checked.

For a browser's request: `Host` must name an allowed host (ALLOWED_HOSTS, plus API_HOST), else 403
`host_not_allowed`; and a state-changing one (any method but GET, HEAD, OPTIONS) or a WebSocket must come
from the API's own origin (Origin's host and port are the `Host` it was sent to) or one in ALLOWED_ORIGINS,
else 403 `cross_site_request`. Without an Origin, `Sec-Fetch-Site` must be `same-origin` or `none`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.domain import untrusted
from shared.settings import Settings

HOST_NOT_ALLOWED = "host_not_allowed"
CROSS_SITE_REQUEST = "cross_site_request"
#: Methods a browser sends without asking (no CORS pre-flight) and that change nothing here.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: What `Sec-Fetch-Site` says of a request the API's own pages (or the user, typing the URL) made.
SAME_ORIGIN_SITES = frozenset({b"same-origin", b"none"})
#: Addresses that mean "every interface", not a name anyone reaches the API by.
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    message: str


def _split_host(host: str) -> tuple[str, str]:
    """(name, port) of a `Host` header or an origin's netloc, the name lower case, IPv6 in brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, ""
        rest = host[end + 1 :]
        return host[: end + 1], rest[1:] if rest.startswith(":") else ""
    if host.count(":") > 1:  # a bare IPv6 address, as a setting may spell it
        return f"[{host}]", ""
    name, _, port = host.partition(":")
    return name.rstrip("."), port


def host_name(host: str) -> str:
    """`Host` (or a configured name) without its port: `LocalHost:8000` → `localhost`, `::1` → `[::1]`."""
    return _split_host(host)[0]


#: A port is at most five ASCII digits (65535).
PORT_DIGITS = 5


def _host_port(host: str, scheme: str) -> tuple[str, int | None] | None:
    """(name, port) with the scheme's default port, or None when the port is not a number: `str.isdigit`
    is also true of "²" (which `int` refuses) and "١", and `int` refuses more than 4300 digits."""
    name, port = _split_host(host)
    if not port:
        return name, DEFAULT_PORTS.get(scheme)
    number = untrusted.ascii_uint(port, PORT_DIGITS)
    return None if number is None else (name, number)


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True, slots=True)
class BrowserPolicy:
    hosts: frozenset[str]
    origins: frozenset[str]
    any_host: bool = False
    any_origin: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> BrowserPolicy:
        hosts = _names(settings.allowed_hosts)
        if settings.api_host not in WILDCARD_BINDS:  # the API's own address is a name it answers to
            hosts.append(settings.api_host)
        origins = _names(settings.allowed_origins)
        return cls(
            hosts=frozenset(host_name(host) for host in hosts if host != "*"),
            origins=frozenset(origin.lower().rstrip("/") for origin in origins if origin != "*"),
            any_host="*" in hosts,
            any_origin="*" in origins,
        )

    def refusal(self, method: str | None, headers: Mapping[bytes, bytes]) -> Refusal | None:
        """Why this request is refused, or None. `method` is None for a WebSocket handshake; `headers` by
        lower-case name (asgi.headers)."""
        origin = headers.get(b"origin")
        site = headers.get(b"sec-fetch-site")
        if origin is None and site is None:
            return None  # not a browser
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.any_host and host_name(host) not in self.hosts:
            return Refusal(
                HOST_NOT_ALLOWED,
                f"this API does not answer browsers that reach it as {untrusted.clip(host_name(host))!r}: "
                "add the name to ALLOWED_HOSTS if it is the API's own",
            )
        if method is not None and method in SAFE_METHODS:
            return None  # a read: the browser lets no other site see the answer (no CORS headers are sent)
        if origin is not None:
            if self._origin_allowed(origin.decode("latin-1"), host):
                return None
            what = "WebSockets" if method is None else f"{untrusted.clip(method)} requests"  # any token is a method
            return Refusal(
                CROSS_SITE_REQUEST,
                f"{what} from pages of {untrusted.clip(origin.decode('latin-1'))!r} are refused: "
                "only the API's own pages and ALLOWED_ORIGINS may change state or open WebSockets",
            )
        if site in SAME_ORIGIN_SITES:
            return None
        return Refusal(CROSS_SITE_REQUEST, "requests from pages of other sites may not change state here")

    def _origin_allowed(self, origin: str, host: str) -> bool:
        normalized = origin.strip().lower().rstrip("/")
        if self.any_origin or normalized in self.origins:
            return True
        try:
            parts = urlsplit(normalized)
        except ValueError:
            return False
        if parts.scheme not in DEFAULT_PORTS or not parts.netloc:  # "null" (sandboxed frame, file:// page)
            return False
        page = _host_port(parts.netloc, parts.scheme)
        return page is not None and page == _host_port(host, parts.scheme)

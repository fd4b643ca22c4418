"""Which web pages may use the API: a browser request's origin against the server's own host
and ``[authorization] cors_domains``.

A browser names the page a request comes from in ``Origin`` (every websocket handshake, every
cross-origin fetch, every POST), else often in ``Referer``; ``Sec-Fetch-Site`` says whether it
was cross-site even when the page hides both. An origin is *accepted* when

- its ``host:port`` is the request's ``Host`` header (a frontend served from this host, or
  through a proxy that passes ``Host`` on), as Tornado's websocket check in Moonraker; or
- it matches a ``cors_domains`` pattern as a whole (``*`` matches anything, Moonraker's rule;
  case-insensitive). Unlike Moonraker, an origin whose host is a trusted client's address is
  not allowed for that alone (the address a page was served from says nothing of the page).

A request without ``Origin`` (curl, scripts, slicers) is not a browser's and is not refused.
Pure: no I/O.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping

import attrs

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

#: What ``Sec-Fetch-Site`` says of a request from another site (``same-origin`` and ``none``,
#: a typed address or a bookmark, are not).
CROSS_SITE = frozenset({"cross-site", "same-site"})


def compile_origins(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching a whole origin against ``cors_domains`` (``*`` is a wildcard)."""
    parts = [re.escape(p.strip().rstrip("/")).replace(r"\*", ".*") for p in patterns if p.strip()]
    if not parts:
        return None
    return re.compile("^(?:" + "|".join(parts) + ")$", re.IGNORECASE)


def _host_port(netloc: str, default_port: int | None) -> tuple[str, int | None] | None:
    """``"Host:8080"`` -> ``("host", 8080)``; the default port when none is given; None when
    it is not a host and port."""
    if not netloc or any(c in netloc for c in "/?#@\\ \t"):
        return None
    try:
        parts = urllib.parse.urlsplit("//" + netloc)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host.lower().rstrip("."), default_port if port is None else port


def split_origin(origin: str) -> tuple[str, str, int | None] | None:
    """``"http://Host:8080"`` -> ``("http", "host", 8080)`` (the scheme's default port when
    none is given); None for what is not an origin (``null``, a path, no host)."""
    scheme, sep, netloc = origin.strip().partition("://")
    if not sep or not scheme or not netloc:
        return None
    scheme = scheme.lower()
    host_port = _host_port(netloc, DEFAULT_PORTS.get(scheme))
    if host_port is None:
        return None
    return scheme, *host_port


def origin_of(url: str) -> str | None:
    """The origin (``scheme://host[:port]``) of a URL such as a ``Referer``; None if none."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    netloc = parts.netloc.rpartition("@")[2]  # user:password@ is not part of an origin
    return f"{parts.scheme.lower()}://{netloc.lower()}"


def same_host(origin: str, host: str | None) -> bool:
    """Whether the origin's host and port are the request's ``Host`` header (ports compared
    with the origin scheme's default filled in: ``http://h`` is ``Host: h`` and ``h:80``)."""
    if not host:
        return False
    parsed = split_origin(origin)
    if parsed is None:
        return False
    scheme, origin_host, origin_port = parsed
    return _host_port(host.strip(), DEFAULT_PORTS.get(scheme)) == (origin_host, origin_port)


@attrs.frozen
class OriginPolicy:
    """The origins a browser request may come from (see the module docstring)."""

    patterns: re.Pattern[str] | None = None

    @classmethod
    def from_config(cls, cors_domains: Iterable[str]) -> OriginPolicy:
        return cls(compile_origins(cors_domains))

    def cors_allowed(self, origin: str | None) -> bool:
        """Whether a ``cors_domains`` pattern matches the whole origin."""
        if not origin or self.patterns is None:
            return False
        return self.patterns.match(origin.strip()) is not None

    def accepts(self, origin: str, host: str | None) -> bool:
        """Whether a page of this origin may use the API (its own host, or CORS-allowed)."""
        return same_host(origin, host) or self.cors_allowed(origin)

    def refusal(self, headers: Mapping[str, str], *, changes_state: bool) -> str | None:
        """Why a request from a browser must be refused as cross-site, or None to serve it.

        ``headers`` has lower-case names. A foreign ``Origin`` is refused on any request (a
        page of that origin could not read the answer anyway); a request that changes state
        without ``Origin`` is refused when its ``Referer`` is foreign, or when it has no
        ``Referer`` either and ``Sec-Fetch-Site`` says it comes from another site."""
        host = headers.get("host")
        origin = headers.get("origin", "").strip()
        if origin:
            return None if self.accepts(origin, host) else _refused("origin", origin)
        if not changes_state:
            return None
        referer = headers.get("referer", "").strip()
        referer_origin = origin_of(referer) if referer else None
        if referer_origin is not None:
            return None if self.accepts(referer_origin, host) else _refused("referer", referer)
        site = headers.get("sec-fetch-site", "").strip().lower()
        if site in CROSS_SITE:
            return f"Cross-origin request refused: a {site} request without an Origin"
        return None

    def websocket_refusal(self, headers: Mapping[str, str]) -> str | None:
        """Why a websocket handshake must be refused (``Origin``, else the old protocol's
        ``Sec-WebSocket-Origin``, neither this host nor allowed), or None to accept it."""
        origin = headers.get("origin") or headers.get("sec-websocket-origin") or ""
        origin = origin.strip()
        if not origin or self.accepts(origin, headers.get("host")):
            return None
        return _refused("origin", origin)


def _refused(what: str, value: str) -> str:
    shown = value if len(value) <= 200 else value[:200] + "..."
    return (
        f"Cross-origin request refused: {what} {shown!r} is neither this host nor in "
        "[authorization] cors_domains"
    )

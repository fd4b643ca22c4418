"""The HTTP transport: a Quart-Trio app serving every registry endpoint, and the ASGI router.

HTTP conventions (Moonraker's web API): arguments come from the query string, the form and a
JSON body, merged, the JSON body taking precedence; query keys may carry a type hint
(``key:int``, ``key:float``, ``key:bool``, ``key:json``). A success is ``{"result": ...}``; an
error is ``{"error": {"code": N, "message": "..."}}`` with the real HTTP status, also for 404 and
405. CORS follows ``[authorization] cors_domains``.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .. import rpc
from ..domain.auth import Authenticator, credentials_from
from ..errors import ApiError
from ..registry import Registry, Transport
from .websocket import WebsocketManager

log = logging.getLogger(__name__)


_ALL_VERBS = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"]
_CORS_HEADERS = (
    "Origin, Accept, Content-Type, X-Requested-With, X-CRSF-Token, Authorization, "
    "X-Access-Token, X-Api-Key"
)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(rpc.dumps(body), status=status, content_type="application/json; charset=utf-8")


def error_response(status: int, message: str) -> Response:
    return json_response({"error": {"code": status, "message": message}}, status)


def _convert_hint(key: str, value: str) -> tuple[str, Any]:
    """``("count:int", "5")`` -> ``("count", 5)``; a key without a hint is left as it is."""
    name, sep, hint = key.rpartition(":")
    if not sep or hint not in ("int", "float", "bool", "json") or not name:
        return key, value
    try:
        if hint == "int":
            return name, int(value)
        if hint == "float":
            return name, float(value)
        if hint == "bool":
            lowered = value.lower()
            if lowered not in ("true", "false"):
                raise ValueError("expected true or false")
            return name, lowered == "true"
        return name, json.loads(value)
    except ValueError as exc:
        raise ApiError(
            f"query argument '{key}': cannot convert {value!r} to {hint}: {exc}"
        ) from None


def query_args(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Query-string arguments with type hints applied (the last of repeated keys wins)."""
    args: dict[str, Any] = {}
    for key, value in pairs:
        name, converted = _convert_hint(key, value)
        args[name] = converted
    return args


def compile_origins(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching a whole origin against ``cors_domains`` (``*`` is a wildcard)."""
    parts = [re.escape(p.strip().rstrip("/")).replace(r"\*", ".*") for p in patterns if p.strip()]
    if not parts:
        return None
    return re.compile("^(?:" + "|".join(parts) + ")$", re.IGNORECASE)


def is_thumbnail(path: str) -> bool:
    """``/server/files/gcodes/**/.thumbs/NAME``: served without credentials, as Moonraker."""
    prefix = "/server/files/gcodes/"
    if not path.startswith(prefix):
        return False
    parts = path[len(prefix) :].split("/")
    return (
        len(parts) >= 2
        and parts[-2] == ".thumbs"
        and all(part not in ("", ".", "..") for part in parts)
    )


def needs_auth(registry: Registry, method: str, path: str) -> bool:
    """Whether a request needs credentials: yes unless the registry endpoint it reaches says
    ``auth=False`` or it reads a thumbnail. Any other route, a new one included, needs them."""
    routes = registry.by_path(path)
    if routes is not None:
        ep = routes.get(method)
        return ep is None or ep.auth
    return not (method in ("GET", "HEAD") and is_thumbnail(path))


#: ``GET /server/files/{root}/{path}``: (root, path, Range header) -> a streamed response.
ServeFile = Callable[[str, str, str | None], Awaitable[Response]]
#: ``DELETE /server/files/{root}/{path}``: "root/path" -> the result.
DeleteFile = Callable[[str], Awaitable[Any]]
#: ``POST /server/files/upload``: (body chunks, Content-Type) -> the result (answered 201).
UploadFile = Callable[[AsyncIterator[bytes], str], Awaitable[dict[str, Any]]]
#: ``POST /api/files/local`` (OctoPrint's upload): (body chunks, Content-Type, base URL) ->
#: OctoPrint's body, answered 201 with its ``files.local.refs.resource`` as the Location.
OctoPrintUpload = Callable[[AsyncIterator[bytes], str, str], Awaitable[dict[str, Any]]]
#: OctoPrint's API answers bare bodies, not ``{"result": ...}`` (as Moonraker's emulation).
_BARE_PREFIX = "api/"


def create_http_app(
    registry: Registry,
    *,
    cors_domains: Iterable[str] = (),
    max_body_size: int = 1024 * 1024 * 1024,
    serve_file: ServeFile | None = None,
    delete_file: DeleteFile | None = None,
    upload_file: UploadFile | None = None,
    octoprint_upload: OctoPrintUpload | None = None,
    authenticator: Authenticator | None = None,
) -> QuartTrio:
    """The Quart-Trio app that serves every registry endpoint over HTTP.

    With an ``authenticator``, every request to every route (including routes added later)
    is authenticated first; only registry endpoints declared ``auth=False``, thumbnails and
    CORS preflights are served without credentials (see :func:`needs_auth`)."""
    app = QuartTrio("trioprint")
    app.config["MAX_CONTENT_LENGTH"] = max_body_size
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    origins = compile_origins(cors_domains)

    def allowed_origin() -> str | None:
        origin = request.headers.get("Origin")
        if origin and origins is not None and origins.match(origin):
            return origin
        return None

    @app.after_request
    async def add_cors(response: Response) -> Response:
        origin = allowed_origin()
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"
        return response

    @app.before_request
    async def authenticate() -> Response | None:
        g.user = None
        if authenticator is None or request.method == "OPTIONS":
            return None
        creds = credentials_from(
            request.remote_addr,
            {k.lower(): v for k, v in request.headers.items()},
            {k: vs[-1] for k, vs in request.args.lists()},
        )
        try:
            g.user = authenticator.authenticate(
                creds, required=needs_auth(registry, request.method, request.path)
            )
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        return None

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        return error_response(status, exc.description or exc.name)

    async def gather_args() -> dict[str, Any]:
        args = query_args(request.args.items(multi=True))
        content_type = request.mimetype
        if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.form
            args.update(query_args(form.items(multi=True)))
        else:
            body = await request.get_data(as_text=False)
            if body.strip():
                try:
                    data = json.loads(body)
                except (ValueError, RecursionError) as exc:
                    raise ApiError(f"request body is not valid JSON: {exc}") from None
                if not isinstance(data, dict):
                    raise ApiError("request body must be a JSON object")
                args.update(data)
        return args

    async def api(path: str) -> Response:
        routes = registry.by_path("/" + path)
        if routes is None:
            return error_response(404, f"Not Found: /{path}")
        verb = request.method
        if verb == "OPTIONS":
            return Response("", status=204, headers={"Allow": ", ".join(routes)})
        ep = routes.get(verb)
        if ep is None:
            return error_response(405, f"Method {verb} not allowed for /{path}")
        try:
            args = await gather_args()
            result = await registry.dispatch(
                ep, args, Transport.HTTP, remote=request.remote_addr, user=g.user
            )
            return json_response(result if path.startswith(_BARE_PREFIX) else {"result": result})
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        except HTTPException:
            raise
        except Exception as exc:
            log.exception("internal error in %s /%s", verb, path)
            return error_response(500, f"Internal error: {exc!r}")

    async def file_route(root: str, path: str) -> Response:
        """Files by path, the one route the registry cannot declare (a path in the URL)."""
        if registry.by_path(f"/server/files/{root}/{path}") is not None:
            return await api(f"server/files/{root}/{path}")
        try:
            if request.method == "GET" and serve_file is not None:
                return await serve_file(root, path, request.headers.get("Range"))
            if request.method == "DELETE" and delete_file is not None:
                return json_response({"result": await delete_file(f"{root}/{path}")})
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        return error_response(405, f"Method {request.method} not allowed for this file path")

    app.add_url_rule(
        "/server/files/<root>/<path:path>", "files", file_route, methods=["GET", "DELETE"]
    )

    async def streamed_body() -> AsyncIterator[bytes]:
        """The request body as it arrives, telling the Router's flow gate what was consumed."""
        flow = request.scope.get(BodyFlow.SCOPE_KEY)
        async for chunk in request.body:
            yield chunk
            if isinstance(flow, BodyFlow):  # the chunk is processed: let as much in again
                flow.consumed(len(chunk))

    async def upload_route() -> Response:
        """The body streamed as it arrives: an upload of any size keeps memory flat."""
        if upload_file is None:
            return error_response(404, "Not Found: /server/files/upload")
        try:
            result = await upload_file(streamed_body(), request.content_type or "")
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        item = result["item"]
        response = json_response(result, 201)
        location = f"/server/files/{item['root']}/{urllib.parse.quote(item['path'])}"
        response.headers["Location"] = request.host_url.rstrip("/") + location
        return response

    app.add_url_rule("/server/files/upload", "upload", upload_route, methods=["POST"])

    async def octoprint_upload_route() -> Response:
        """OctoPrint's upload, streamed like the one above."""
        if octoprint_upload is None:
            return error_response(404, "Not Found: /api/files/local")
        try:
            result = await octoprint_upload(
                streamed_body(), request.content_type or "", request.host_url
            )
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        response = json_response(result, 201)
        response.headers["Location"] = result["files"]["local"]["refs"]["resource"]
        return response

    app.add_url_rule(
        "/api/files/local", "octoprint_upload", octoprint_upload_route, methods=["POST"]
    )
    app.add_url_rule("/", "api_root", api, methods=_ALL_VERBS, defaults={"path": ""})
    app.add_url_rule("/<path:path>", "api", api, methods=_ALL_VERBS)
    return app


ASGIApp = Callable[[Mapping[str, Any], Any, Any], Awaitable[None]]

#: The routes whose body is streamed to disk (an upload of any size).
STREAMED_PATHS = frozenset({"/server/files/upload", "/api/files/local"})


class BodyFlow:
    """Backpressure for a streamed request body.

    Quart reads a request's ASGI messages as fast as they come and buffers their bodies without
    bound, so an upload arriving faster than the disk takes it would grow in memory. The Router
    hands Quart :meth:`receive` instead of hypercorn's receive: it takes the next message only
    while less than ``limit`` bytes wait unconsumed, and the route reports what it consumed
    with :meth:`consumed`. When the gate is shut, hypercorn's own bounded queue fills and it
    stops reading the socket: TCP pushes back on the client.
    """

    SCOPE_KEY = "trioprint.body_flow"

    def __init__(self, receive: Callable[[], Awaitable[Any]], limit: int = 1 << 20) -> None:
        self._receive = receive
        self._limit = limit
        self._done = False
        self._drained = trio.Event()
        self.buffered = 0

    async def receive(self) -> Any:
        while not self._done and self.buffered >= self._limit:
            self._drained = trio.Event()
            await self._drained.wait()
        message = await self._receive()
        if message.get("type") == "http.request":
            self.buffered += len(message.get("body", b""))
            if not message.get("more_body", False):
                self._done = True  # the rest (a disconnect) passes without waiting
        return message

    def consumed(self, size: int) -> None:
        self.buffered = max(0, self.buffered - size)
        if self.buffered < self._limit:
            self._drained.set()


class Router:
    """The ASGI application hypercorn serves: ``/websocket`` to the JSON-RPC transport, the
    rest (HTTP and lifespan) to the Quart-Trio app; streamed uploads through a :class:`BodyFlow`."""

    def __init__(self, http_app: QuartTrio, websockets: WebsocketManager) -> None:
        self._http = http_app
        self._websockets = websockets

    async def __call__(self, scope: Mapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope.get("path") == "/websocket":
            await self._websockets.serve(scope, receive, send)
        elif scope["type"] == "http" and scope.get("path") in STREAMED_PATHS:
            flow = BodyFlow(receive)
            scope = {**scope, BodyFlow.SCOPE_KEY: flow}
            await self._http(scope, flow.receive, send)  # type: ignore[arg-type]
        else:
            await self._http(scope, receive, send)  # type: ignore[arg-type]

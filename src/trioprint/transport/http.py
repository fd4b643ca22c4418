"""The HTTP transport: a Quart-Trio app serving every registry endpoint, and the ASGI router.

HTTP conventions (Moonraker's web API): arguments come from the query string, the form and a
JSON body, merged, the JSON body taking precedence; query keys may carry a type hint
(``key:int``, ``key:float``, ``key:bool``, ``key:json``). A success is ``{"result": ...}``; an
error is ``{"error": {"code": N, "message": "..."}}`` with the real HTTP status, also for 404 and
405. CORS follows ``[authorization] cors_domains``.

Cross-site protection (see ``domain/origins.py``): a request whose ``Origin`` is neither this
host nor allowed by ``cors_domains`` is refused with 403 before it is authenticated (a page on
any site could otherwise drive the printer through a trusted loopback address), a request that
changes state also when its ``Referer`` is foreign or ``Sec-Fetch-Site`` says it is
cross-site; the websocket handshake is refused the same way by the :class:`Router`. Preflights
(``OPTIONS``) are answered for every route, without credentials, and refused for an origin
that is not accepted.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .. import rpc
from ..domain import strictjson
from ..domain.auth import Authenticator, credentials_from
from ..domain.origins import OriginPolicy
from ..domain.origins import compile_origins as compile_origins  # re-exported
from ..errors import ApiError
from ..registry import Registry, Transport
from . import jsonrpc
from .server_fixes import shield_final_send
from .websocket import WebsocketManager

log = logging.getLogger(__name__)


_ALL_VERBS = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"]
#: The request headers a preflight always allows (Moonraker's list); those a preflight asks
#: for are allowed as well.
_CORS_HEADERS = (
    "Origin",
    "Accept",
    "Content-Type",
    "X-Requested-With",
    "X-CRSF-Token",
    "Authorization",
    "X-Access-Token",
    "X-Api-Key",
)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
#: Where :func:`create_http_app` keeps its :class:`OriginPolicy` (the Router's default).
ORIGINS_KEY = "trioprint.origins"
#: A refused upload's body is still read (and dropped), up to this many bytes and seconds, so
#: that a client that sends the whole body before it reads gets the answer (past that, the
#: connection is closed after the answer).
DRAIN_LIMIT = 32 * 1024 * 1024
DRAIN_TIMEOUT = 10.0
#: The routes outside the registry, by the verbs they serve.
_UPLOAD_PATHS = ("/server/files/upload", "/api/files/local")
#: JSON-RPC over HTTP: the route itself is public, each method it calls is checked.
JSONRPC_PATH = "/server/jsonrpc"
_FILE_PREFIX = "/server/files/"
_OCTOPRINT_FILE_PREFIX = "/api/files/local/"


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
            number = float(value)
            if strictjson.finite_or_none(number) is None:
                raise ValueError("not a finite number")
            return name, number
        if hint == "bool":
            lowered = value.lower()
            if lowered not in ("true", "false"):
                raise ValueError("expected true or false")
            return name, lowered == "true"
        return name, strictjson.loads(value)
    except (ValueError, RecursionError) as exc:
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
    if path == JSONRPC_PATH and method == "POST":
        return False  # the methods it calls are checked one by one (401 each: -32602)
    return not (method in ("GET", "HEAD") and is_thumbnail(path))


def changes_state(registry: Registry, method: str, path: str) -> bool:
    """Whether a request may change state, for the cross-site check: every method but GET,
    HEAD and OPTIONS, and a GET or HEAD of an endpoint served under one name on GET and POST
    alike (Moonraker's endpoints forwarded to klippy: ``GET /printer/gcode/script?script=G28``
    runs G-code, and an ``<img>`` on any page can send it)."""
    if method == "OPTIONS":
        return False
    if method not in ("GET", "HEAD"):
        return True
    routes = registry.by_path(path)
    if routes is None:
        return False
    get, post = routes.get("GET"), routes.get("POST")
    return (
        get is not None
        and post is not None
        and get.rpc_name is not None
        and get.rpc_name == post.rpc_name
    )


def route_methods(registry: Registry, path: str) -> list[str] | None:
    """The verbs served at ``path`` (what a preflight allows); None where nothing is."""
    routes = registry.by_path(path)
    if routes is not None:
        return list(routes)
    if path in _UPLOAD_PATHS or path == JSONRPC_PATH:
        return ["POST"]
    if path.startswith(_FILE_PREFIX) and "/" in path[len(_FILE_PREFIX) :].strip("/"):
        return ["GET", "DELETE"]  # /server/files/{root}/{path}
    if path.startswith(_OCTOPRINT_FILE_PREFIX) and path[len(_OCTOPRINT_FILE_PREFIX) :].strip("/"):
        return ["GET"]  # OctoPrint's file resource
    return None


def allowed_headers(requested: str | None) -> str:
    """``Access-Control-Allow-Headers``: Moonraker's list and the ones the preflight asks for
    (``Access-Control-Request-Headers``; anything that is not a header name is left out)."""
    names = list(_CORS_HEADERS)
    known = {name.lower() for name in names}
    for raw in (requested or "").split(","):
        name = raw.strip()
        if name and name.lower() not in known and _HEADER_NAME.match(name) and len(known) < 64:
            names.append(name)
            known.add(name.lower())
    return ", ".join(names)


#: ``GET /server/files/{root}/{path}``: (root, path, Range header) -> a streamed response.
ServeFile = Callable[[str, str, str | None], Awaitable[Response]]
#: ``DELETE /server/files/{root}/{path}``: "root/path" -> the result.
DeleteFile = Callable[[str], Awaitable[Any]]
#: ``POST /server/files/upload``: (body chunks, Content-Type) -> the result (answered 201).
UploadFile = Callable[[AsyncIterator[bytes], str], Awaitable[dict[str, Any]]]
#: ``POST /api/files/local`` (OctoPrint's upload): (body chunks, Content-Type, base URL) ->
#: OctoPrint's body, answered 201 with its ``files.local.refs.resource`` as the Location.
OctoPrintUpload = Callable[[AsyncIterator[bytes], str, str], Awaitable[dict[str, Any]]]
#: ``GET /api/files/local/<path>``: (path, base URL) -> OctoPrint's file information.
OctoPrintFile = Callable[[str, str], Awaitable[dict[str, Any]]]


class StaticSite(Protocol):
    """The web frontend's files (``components/frontend.py``), served at every path the API
    does not serve."""

    def serves(self, method: str, path: str) -> bool: ...

    async def respond(self, method: str, path: str, headers: Mapping[str, str]) -> Response: ...


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
    octoprint_file: OctoPrintFile | None = None,
    authenticator: Authenticator | None = None,
    frontend: StaticSite | None = None,
) -> QuartTrio:
    """The Quart-Trio app that serves every registry endpoint over HTTP.

    With an ``authenticator``, every request to every route (including routes added later)
    is authenticated first; only registry endpoints declared ``auth=False``, thumbnails and
    CORS preflights are served without credentials (see :func:`needs_auth`).

    Before that, a request from a page of a foreign origin is refused (403), and ``OPTIONS``
    is answered as a CORS preflight (see the module docstring); the answers to accepted
    origins, errors included, carry the CORS headers.

    With a ``frontend``, a ``GET``/``HEAD`` of a path outside the API (no registry endpoint,
    no API prefix) is one of its files, served without credentials."""
    app = QuartTrio("trioprint")
    app.config["MAX_CONTENT_LENGTH"] = max_body_size
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    policy = OriginPolicy.from_config(cors_domains)
    app.extensions[ORIGINS_KEY] = policy

    def accepted_origin() -> str | None:
        origin = request.headers.get("Origin", "").strip()
        if origin and policy.accepts(origin, request.headers.get("Host")):
            return origin
        return None

    @app.after_request
    async def add_cors(response: Response) -> Response:
        if "Origin" in request.headers:
            response.vary.add("Origin")
        origin = accepted_origin()
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    def static_request() -> bool:
        return (
            frontend is not None
            and registry.by_path(request.path) is None
            and frontend.serves(request.method, request.path)
        )

    def preflight() -> Response:
        """``OPTIONS``: refused for an origin that is not accepted; else 204 with the
        route's verbs, and for a browser's preflight the headers it asks for."""
        methods = route_methods(registry, request.path)
        if methods is None:
            return error_response(404, f"Not Found: {request.path}")
        verbs = ", ".join([*methods, "OPTIONS"])
        response = Response("", status=204, headers={"Allow": verbs})
        if accepted_origin() is not None:
            response.headers["Access-Control-Allow-Methods"] = verbs
            response.headers["Access-Control-Allow-Headers"] = allowed_headers(
                request.headers.get("Access-Control-Request-Headers")
            )
            if request.headers.get("Access-Control-Request-Private-Network") == "true":
                response.headers["Access-Control-Allow-Private-Network"] = "true"
        return response

    @app.before_request
    async def guard() -> Response | None:
        """Every request, on every route: the origin check, preflights, authentication."""
        g.user = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        refusal = policy.refusal(
            headers, changes_state=changes_state(registry, request.method, request.path)
        )
        if refusal is not None:
            log.info(
                "%s %s from %s: %s", request.method, request.path, request.remote_addr, refusal
            )
            return error_response(403, refusal)
        if request.method == "OPTIONS":
            return preflight()
        if authenticator is None or static_request():
            return None
        creds = credentials_from(
            request.remote_addr,
            headers,
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
                    data = strictjson.loads(body)
                except (ValueError, RecursionError) as exc:
                    raise ApiError(f"request body is not valid JSON: {exc}") from None
                if not isinstance(data, dict):
                    raise ApiError("request body must be a JSON object")
                args.update(data)
        return args

    async def api(path: str) -> Response:
        routes = registry.by_path("/" + path)
        if routes is None:
            if "/" + path == JSONRPC_PATH:
                return error_response(405, f"Method {request.method} not allowed for /{path}")
            if frontend is not None and static_request():
                headers = {k.lower(): v for k, v in request.headers.items()}
                return await frontend.respond(request.method, request.path, headers)
            return error_response(404, f"Not Found: /{path}")
        verb = request.method
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

    async def refuse_upload(body: AsyncIterator[bytes], exc: ApiError) -> Response:
        await drain(body)
        return error_response(exc.status, exc.message)

    async def upload_route() -> Response:
        """The body streamed as it arrives: an upload of any size keeps memory flat."""
        if upload_file is None:
            return error_response(404, "Not Found: /server/files/upload")
        body = streamed_body()
        try:
            result = await upload_file(body, request.content_type or "")
        except ApiError as exc:
            return await refuse_upload(body, exc)
        item = result["item"]
        response = json_response(result, 201)
        location = f"/server/files/{item['root']}/{urllib.parse.quote(item['path'])}"
        response.headers["Location"] = request.host_url.rstrip("/") + location
        return response

    app.add_url_rule("/server/files/upload", "upload", upload_route, methods=["POST"])

    async def jsonrpc_route() -> Response:
        """One JSON-RPC request or a batch in the body, answered from the registry as the
        websocket answers it; a body of notifications only is answered with an empty 200."""
        if request.mimetype != "application/json":
            return error_response(400, "Invalid content type, application/json required")
        body = await request.get_data(as_text=False)
        caller = jsonrpc.Caller(
            Transport.HTTP,
            remote=request.remote_addr,
            user=g.user,
            require_user=authenticator is not None,
        )
        reply = await jsonrpc.answer_message(registry, rpc.parse(body), caller)
        if reply is None:
            return Response("", status=200)
        return Response(reply, status=200, content_type="application/json; charset=utf-8")

    app.add_url_rule(JSONRPC_PATH, "jsonrpc", jsonrpc_route, methods=["POST"])

    async def octoprint_upload_route() -> Response:
        """OctoPrint's upload, streamed like the one above."""
        if octoprint_upload is None:
            return error_response(404, "Not Found: /api/files/local")
        body = streamed_body()
        try:
            result = await octoprint_upload(body, request.content_type or "", request.host_url)
        except ApiError as exc:
            return await refuse_upload(body, exc)
        response = json_response(result, 201)
        response.headers["Location"] = result["files"]["local"]["refs"]["resource"]
        return response

    app.add_url_rule(
        "/api/files/local", "octoprint_upload", octoprint_upload_route, methods=["POST"]
    )

    async def octoprint_file_route(path: str) -> Response:
        """OctoPrint's file resource (the upload's ``refs.resource``): a path in the URL."""
        if octoprint_file is None:
            return error_response(404, f"Not Found: /api/files/local/{path}")
        try:
            return json_response(await octoprint_file(path, request.host_url))
        except ApiError as exc:
            return error_response(exc.status, exc.message)

    app.add_url_rule(
        f"{_OCTOPRINT_FILE_PREFIX}<path:path>",
        "octoprint_file",
        octoprint_file_route,
        methods=["GET"],
    )
    app.add_url_rule("/", "api_root", api, methods=_ALL_VERBS, defaults={"path": ""})
    app.add_url_rule("/<path:path>", "api", api, methods=_ALL_VERBS)
    return app


async def drain(body: AsyncIterator[bytes]) -> None:
    """Read and drop what is left of a body (bounded: ``DRAIN_LIMIT``, ``DRAIN_TIMEOUT``)."""
    left = DRAIN_LIMIT
    with trio.move_on_after(DRAIN_TIMEOUT):
        async for chunk in body:
            left -= len(chunk)
            if left < 0:
                break


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
    rest (HTTP and lifespan) to the Quart-Trio app; streamed uploads through a :class:`BodyFlow`.

    A websocket handshake from a page of a foreign origin is answered 403 (as Moonraker's
    Tornado does) and never reaches the websocket manager. ``origins`` defaults to the policy
    the HTTP app was built with."""

    def __init__(
        self,
        http_app: QuartTrio,
        websockets: WebsocketManager,
        origins: OriginPolicy | None = None,
    ) -> None:
        self._http = http_app
        self._websockets = websockets
        self._origins: OriginPolicy = (
            origins or http_app.extensions.get(ORIGINS_KEY) or OriginPolicy()
        )

    async def __call__(self, scope: Mapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope.get("path") == "/websocket":
            refusal = self._origins.websocket_refusal(_scope_headers(scope))
            if refusal is None:
                await self._websockets.serve(scope, receive, send)
            else:
                client = scope.get("client") or ("?", 0)
                log.info("websocket from %s refused: %s", client[0], refusal)
                await deny_websocket(scope, receive, send, 403, refusal)
        elif scope["type"] == "http" and scope.get("path") in STREAMED_PATHS:
            flow = BodyFlow(receive)
            scope = {**scope, BodyFlow.SCOPE_KEY: flow}
            await self._http(scope, flow.receive, shield_final_send(send))  # type: ignore[arg-type]
        elif scope["type"] == "http":
            await self._http(scope, receive, shield_final_send(send))  # type: ignore[arg-type]
        else:
            await self._http(scope, receive, send)  # type: ignore[arg-type]


def _scope_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """An ASGI scope's headers, lower-case names (a repeated header: the first one)."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        headers.setdefault(bytes(name).decode("latin-1").lower(), bytes(value).decode("latin-1"))
    return headers


async def deny_websocket(
    scope: Mapping[str, Any], receive: Any, send: Any, status: int, message: str
) -> None:
    """Refuse a websocket handshake with an HTTP answer: a JSON error body where the server
    offers ASGI's denial response (hypercorn does), else a close before accepting, which the
    server answers 403."""
    first = await receive()
    if first.get("type") != "websocket.connect":
        return  # the client went away before the handshake was read
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = strictjson.dumps({"error": {"code": status, "message": message}}).encode("utf-8")
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(body)).encode("ascii")),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})

"""The endpoint registry: every API method is declared once and served on both transports.

A component marks its handlers with :func:`endpoint`::

    @attrs.frozen
    class GcodeStoreParams:
        count: int | None = None

    class DataStore:
        @endpoint("/server/gcode_store", "GET", params=GcodeStoreParams)
        async def gcode_store(self, call: Call[GcodeStoreParams]) -> dict[str, Any]: ...

and :meth:`Registry.add_component` collects them. From that one declaration the registry derives
the JSON-RPC name with Moonraker's mechanical rule (``/server/info`` GET -> ``server.info``; a
path served with several verbs prefixes the last part with the verb, so ``/server/database/item``
GET -> ``server.database.get_item``), the HTTP route, and the typed parameters, which are
structured and validated by cattrs before the handler runs.

This module does no I/O: the transports (``transport/http.py``, ``transport/websocket.py``) call
:meth:`Registry.dispatch` with the raw arguments they parsed.
"""

from __future__ import annotations

import contextlib
import enum
import math
import re
import types
import typing
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

import attrs
import cattrs

from .domain.auth import User
from .domain.coerce import as_int
from .errors import ApiError

P = TypeVar("P")
P_co = TypeVar("P_co", covariant=True)

HTTP_VERBS = ("GET", "POST", "DELETE")
_PATH_RE = re.compile(r"^(/[a-z0-9_]+)+$")
_ENDPOINT_ATTR = "__trioprint_endpoints__"


class Transport(enum.Flag):
    HTTP = enum.auto()
    WEBSOCKET = enum.auto()
    #: JSON-RPC over an MQTT broker (``[mqtt]``): every method the websocket has, but those
    #: declared for the websocket alone (a connection's own methods) and the MQTT endpoints.
    MQTT = enum.auto()
    ALL = HTTP | WEBSOCKET | MQTT


class Connection(Protocol):
    """What a handler may know of the websocket connection a call came in on."""

    @property
    def connection_id(self) -> int: ...

    @property
    def client_info(self) -> Mapping[str, Any] | None: ...

    #: Who the connection is authenticated as (None: only methods with ``auth=False``).
    user: User | None

    def identify(self, info: Mapping[str, Any]) -> None: ...

    def send_notification(self, method: str, params: list[Any] | None = None) -> None: ...


@attrs.frozen
class NoParams:
    """The parameters of a method that takes none (extra arguments are ignored)."""


@attrs.frozen
class Call(Generic[P_co]):
    """One request, as a handler sees it, whichever transport it came on."""

    params: P_co
    transport: Transport
    verb: str
    remote: str | None = None
    connection: Connection | None = None
    #: The authenticated user (a registered one, or the API key or trusted pseudo-user);
    #: None when no credentials were given (only for methods declared ``auth=False``).
    user: User | None = None


Handler = Callable[[Call[Any]], Awaitable[Any]]


@attrs.frozen
class Declaration:
    """What :func:`endpoint` records on a handler function."""

    path: str
    verbs: tuple[str, ...]
    params: type[Any]
    transports: Transport
    auth: bool
    rpc: str | None
    urgent: bool = False


@attrs.frozen
class Endpoint:
    """One (path, verb) pair bound to a handler, with its derived JSON-RPC name."""

    path: str
    verb: str
    handler: Handler
    params: type[Any]
    transports: Transport
    auth: bool
    rpc_name: str | None
    #: Run at once on a websocket whatever else its connection has in flight (see
    #: :func:`endpoint`).
    urgent: bool = False


def endpoint(
    path: str,
    *verbs: str,
    params: type[Any] = NoParams,
    transports: Transport = Transport.ALL,
    auth: bool = True,
    rpc: str | None = None,
    urgent: bool = False,
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Declare a method handler: path, HTTP verbs, params class, transports and auth.

    ``rpc`` overrides the derived JSON-RPC name (only needed where Moonraker's own name does
    not follow its rule); with several verbs, every verb is served under that one name, as
    Moonraker does for the endpoints it forwards to klippy (GET and POST alike).

    ``urgent`` methods (the emergency stop, the restarts) are read and started on a websocket
    at once, however many ordinary requests its connection has in flight or waiting.
    """
    if not verbs:
        verbs = ("GET",)
    for verb in verbs:
        if verb not in HTTP_VERBS:
            raise ValueError(f"unsupported HTTP verb {verb!r} for {path}")
    if not _PATH_RE.match(path):
        raise ValueError(f"invalid endpoint path {path!r}")
    if not attrs.has(params):
        raise TypeError(f"params of {path} must be an attrs class, not {params!r}")
    decl = Declaration(path, tuple(verbs), params, transports, auth, rpc, urgent)

    def mark(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        existing: list[Declaration] = list(getattr(func, _ENDPOINT_ATTR, []))
        existing.append(decl)
        setattr(func, _ENDPOINT_ATTR, existing)
        return func

    return mark


def rpc_names_for(path: str, verbs: tuple[str, ...]) -> dict[str, str]:
    """Moonraker's rule: ``/a/b/c`` -> ``a.b.c``; with several verbs -> ``a.b.<verb>_c``."""
    parts = path.strip("/").split("/")
    if len(verbs) == 1:
        return {verbs[0]: ".".join(parts)}
    return {v: ".".join([*parts[:-1], f"{v.lower()}_{parts[-1]}"]) for v in verbs}


# --- parameter conversion -------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return {"str": "string", "dict": "object", "list": "array"}.get(tp.__name__, tp.__name__)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return _type_name(origin)
    return str(tp)


class _Invalid(Exception):
    def __init__(self, expected: Any, value: Any) -> None:
        super().__init__(f"expected {_type_name(expected)}, got {_short_repr(value)}")


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _to_int(value: Any, _: type) -> int:
    number = as_int(value)
    if number is None:
        raise _Invalid(int, value)
    return number


def _to_float(value: Any, _: type) -> float:
    if isinstance(value, bool):
        raise _Invalid(float, value)
    number: float | None = None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    # NaN and infinities are not JSON: they would be sent back to every client
    if number is None or not math.isfinite(number):
        raise _Invalid(float, value)
    return number


def _to_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _Invalid(bool, value)


def _to_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    raise _Invalid(str, value)


def _to_dict(value: Any, _: type) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise _Invalid(dict, value)


def _to_list(value: Any, _: type) -> list[Any]:
    if isinstance(value, list):
        return value
    raise _Invalid(list, value)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def make_params_converter() -> cattrs.Converter:
    """The converter for request parameters.

    Strings from query strings and forms are accepted where a number or boolean is expected
    (``"12"`` -> 12, ``"true"`` -> True), as Moonraker does; anything else of the wrong type is
    refused with a message naming the argument and the expected type.
    """
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    conv.register_structure_hook(int, _to_int)
    conv.register_structure_hook(float, _to_float)
    conv.register_structure_hook(bool, _to_bool)
    conv.register_structure_hook(str, _to_str)
    conv.register_structure_hook(dict, _to_dict)
    conv.register_structure_hook(list, _to_list)
    conv.register_structure_hook(typing.Any, lambda v, _: v)

    def union(value: Any, tp: Any) -> Any:
        # Members are tried in declaration order; the first that accepts the value wins.
        members = typing.get_args(tp)
        if value is None:
            if type(None) in members:
                return None
            raise _Invalid(tp, value)
        for member in members:
            if member is type(None):
                continue
            try:
                return conv.structure(value, member)
            except Exception:
                continue
        raise _Invalid(tp, value)

    conv.register_structure_hook_func(_is_union, union)
    return conv


_PARAMS = make_params_converter()


def _describe(exc: BaseException, path: str) -> Iterator[str]:
    """Flatten a cattrs error tree into "argument 'x': problem" lines."""
    if isinstance(exc, cattrs.ClassValidationError | cattrs.IterableValidationError):
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", []):
                text = str(note)
                m = re.search(r"@ attribute (\w+)", text)
                if m:
                    sub_path = f"{path}.{m.group(1)}" if path else m.group(1)
                    break
                m = re.search(r"@ index (\d+)", text)
                if m:
                    sub_path = f"{path}[{m.group(1)}]"
                    break
            yield from _describe(sub, sub_path)
    elif isinstance(exc, KeyError) and path:
        yield f"missing required argument '{path}'"
    else:
        yield f"invalid argument '{path}': {exc}"


def structure_params(raw: Mapping[str, Any], cls: type[P]) -> P:
    """Build the typed params of a call from its raw arguments, or raise a 400 ApiError.

    A params class with a ``from_args(raw)`` classmethod builds itself (for arguments that are
    not a fixed set of names, such as ``printer.objects.query``'s object names on HTTP).
    """
    from_args = getattr(cls, "from_args", None)
    if from_args is not None:
        built: P = from_args(raw)
        return built
    try:
        return _PARAMS.structure(raw, cls)
    except Exception as exc:  # cattrs raises a tree of errors; flatten it into one message
        problems = list(_describe(exc, ""))
        raise ApiError("; ".join(problems) or f"invalid arguments: {exc}", 400) from None


# --- the registry ---------------------------------------------------------------------------


class Registry:
    """All endpoints of one server instance, looked up by JSON-RPC name or by HTTP path."""

    def __init__(self) -> None:
        self._by_rpc: dict[str, Endpoint] = {}
        self._by_path: dict[str, dict[str, Endpoint]] = {}
        #: The routes served over HTTP, by path (looked up for every HTTP request, twice: once
        #: to authenticate it, once to serve it), built as endpoints are added.
        self._http_by_path: dict[str, dict[str, Endpoint]] = {}

    def add(
        self,
        path: str,
        verbs: tuple[str, ...],
        handler: Handler,
        *,
        params: type[Any] = NoParams,
        transports: Transport = Transport.ALL,
        auth: bool = True,
        rpc: str | None = None,
        urgent: bool = False,
    ) -> None:
        if path in self._by_path:
            raise ValueError(f"endpoint {path} is declared twice")
        names = rpc_names_for(path, verbs)
        if rpc is not None:
            # One name for every verb (Moonraker's klippy endpoints take GET and POST alike).
            names = dict.fromkeys(verbs, rpc)
        routes: dict[str, Endpoint] = {}
        for verb in verbs:
            rpc_name = names[verb] if transports & Transport.WEBSOCKET else None
            ep = Endpoint(path, verb, handler, params, transports, auth, rpc_name, urgent)
            routes[verb] = ep
            if rpc_name is not None and not (rpc is not None and verb != verbs[0]):
                if rpc_name in self._by_rpc:
                    raise ValueError(f"JSON-RPC method {rpc_name} is declared twice")
                self._by_rpc[rpc_name] = ep
        self._by_path[path] = routes
        http = {v: ep for v, ep in routes.items() if ep.transports & Transport.HTTP}
        if http:
            self._http_by_path[path] = http

    def add_component(self, component: object) -> None:
        """Register every method of ``component`` marked with :func:`endpoint`."""
        for name in dir(type(component)):
            func = getattr(type(component), name, None)
            decls: list[Declaration] = getattr(func, _ENDPOINT_ATTR, [])
            for decl in decls:
                self.add(
                    decl.path,
                    decl.verbs,
                    getattr(component, name),
                    params=decl.params,
                    transports=decl.transports,
                    auth=decl.auth,
                    rpc=decl.rpc,
                    urgent=decl.urgent,
                )

    def by_rpc(self, name: str) -> Endpoint | None:
        return self._by_rpc.get(name)

    def by_path(self, path: str) -> Mapping[str, Endpoint] | None:
        """The HTTP routes of ``path`` by verb; None if nothing is served there over HTTP."""
        return self._http_by_path.get(path)

    def endpoints(self) -> list[Endpoint]:
        return [ep for routes in self._by_path.values() for ep in routes.values()]

    def rpc_names(self) -> list[str]:
        return sorted(self._by_rpc)

    async def dispatch(
        self,
        ep: Endpoint,
        raw_args: Mapping[str, Any],
        transport: Transport,
        *,
        remote: str | None = None,
        connection: Connection | None = None,
        user: User | None = None,
    ) -> Any:
        """Structure the params, run the handler and return its result ("ok" for None)."""
        params = structure_params(raw_args, ep.params)
        result = await ep.handler(Call(params, transport, ep.verb, remote, connection, user))
        return "ok" if result is None else result

"""Cross-site protection: a page of a foreign origin can neither open the websocket nor send a
request that changes state, on any route, even though loopback is trusted; the frontend's own
host, ``cors_domains`` and clients without an ``Origin`` (curl, scripts, slicers) still work.

The tests play the browser: they send the ``Origin``, ``Referer`` and ``Sec-Fetch-Site``
headers Chromium sends, through a live server (real hypercorn, real websocket handshakes) and
in-process (the Quart app and the Router on a whole instance).
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from trio_websocket import open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import RejectConnection, RejectData, Request

from trioprint.app import Instance
from trioprint.config import load_config
from trioprint.domain.origins import OriginPolicy, origin_of, same_host
from trioprint.transport.http import Router

from .live import RpcClient, live_server

FOREIGN = "http://evil.example"
ALLOWED = "https://ui.example"
REFUSED_PREFIX = "Cross-origin request refused"
LOOPBACK = ("127.0.0.1", 40000)
UNTRUSTED = ("203.0.113.9", 40001)


# --- matching, as Moonraker 0.11 matches cors_domains ----------------------------------------

MOONRAKER_STYLE = ("*.local", "*://my.mainsail.xyz", "http://127.0.0.1:*", "https://app.fluidd.xyz")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://printer.local", True),
        ("https://a.b.local", True),
        ("https://a.b.local:8443", False),  # a port needs a pattern of its own (Moonraker's)
        ("http://printer.local.evil.com", False),
        ("http://evil-local", False),
        ("https://my.mainsail.xyz", True),
        ("http://my.mainsail.xyz", True),
        ("https://my.mainsail.xyz.evil.com", False),
        ("https://evilmy.mainsail.xyz", False),
        ("http://127.0.0.1:8080", True),
        ("http://127.0.0.1", False),  # the pattern wants a port
        ("http://127.0.0.1.evil.com:80", False),
        ("https://app.fluidd.xyz", True),
        ("HTTPS://APP.FLUIDD.XYZ", True),
        ("http://app.fluidd.xyz", False),
        ("https://app.fluidd.xyz:444", False),
        ("null", False),
    ],
)
def test_cors_domains_match_whole_origins_with_wildcards(origin: str, allowed: bool) -> None:
    policy = OriginPolicy.from_config(MOONRAKER_STYLE)
    assert policy.cors_allowed(origin) is allowed


def test_a_trusted_address_is_no_allowed_origin() -> None:
    """A difference from Moonraker (README): loopback and trusted_clients are trusted as
    clients, but a page served from such an address is not CORS-allowed for that alone."""
    policy = OriginPolicy.from_config(("*.local",))
    assert not policy.cors_allowed("http://127.0.0.1:8080")
    assert not policy.cors_allowed(None)
    assert not OriginPolicy().cors_allowed("http://printer.local")


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://192.168.1.5:7125", "192.168.1.5:7125", True),
        ("http://192.168.1.5:7125", "192.168.1.5:7126", False),
        ("http://192.168.1.5", "192.168.1.5:7125", False),
        ("http://printer.local", "printer.local", True),
        ("http://printer.local", "printer.local:80", True),
        ("https://printer.local", "printer.local", True),
        ("https://printer.local", "printer.local:80", False),
        ("http://Printer.Local:7125", "printer.local:7125", True),
        ("http://[::1]:7125", "[::1]:7125", True),
        ("http://[::1]:7125", "[::2]:7125", False),
        ("http://evil.example", "printer.local", False),
        ("null", "printer.local", False),
        ("http://printer.local/", "printer.local", False),  # not an origin
        ("http://a@printer.local", "printer.local", False),
        ("http://printer.local:x", "printer.local", False),
        ("http://printer.local", None, False),
        ("http://printer.local", "", False),
    ],
)
def test_same_host_is_the_host_header(origin: str, host: str | None, same: bool) -> None:
    assert same_host(origin, host) is same


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://evil.example/page?x=1#y", "http://evil.example"),
        ("https://UI.example:8443/", "https://ui.example:8443"),
        ("http://user:pw@host:1/x", "http://host:1"),
        ("/relative", None),
        ("not a url", None),
        ("http://[broken/", None),
    ],
)
def test_origin_of_a_referer(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


def browser(origin: str | None = None, **more: str) -> dict[str, str]:
    headers = {"host": "192.168.1.5:7125"}
    if origin is not None:
        headers["origin"] = origin
    headers.update({k.replace("_", "-"): v for k, v in more.items()})
    return headers


@pytest.mark.parametrize(
    ("headers", "changes_state", "refused"),
    [
        (browser(), True, False),  # curl, a slicer, a script
        (browser(FOREIGN), True, True),
        (browser(FOREIGN), False, True),  # a page could not read the answer anyway
        (browser(ALLOWED), True, False),
        (browser("http://192.168.1.5:7125"), True, False),
        (browser("null"), True, True),
        (browser(referer="http://evil.example/x"), True, True),
        (browser(referer="http://evil.example/x"), False, False),  # a link to a download
        (browser(referer="http://192.168.1.5:7125/#/"), True, False),
        (browser(referer="https://ui.example/"), True, False),
        (browser(sec_fetch_site="cross-site"), True, True),  # referrerpolicy=no-referrer
        (browser(sec_fetch_site="same-site"), True, True),
        (browser(sec_fetch_site="cross-site"), False, False),
        (browser(sec_fetch_site="same-origin"), True, False),
        (browser(sec_fetch_site="none"), True, False),  # typed into the address bar
        (browser(ALLOWED, sec_fetch_site="cross-site"), True, False),
    ],
)
def test_refusal(headers: dict[str, str], changes_state: bool, refused: bool) -> None:
    policy = OriginPolicy.from_config((ALLOWED,))
    reason = policy.refusal(headers, changes_state=changes_state)
    assert (reason is not None) is refused
    if reason is not None:
        assert reason.startswith(REFUSED_PREFIX)


def test_websocket_refusal_reads_origin_then_sec_websocket_origin() -> None:
    policy = OriginPolicy.from_config((ALLOWED,))
    assert policy.websocket_refusal({"host": "h:1"}) is None
    assert policy.websocket_refusal({"host": "h:1", "origin": "http://h:1"}) is None
    assert policy.websocket_refusal({"host": "h:1", "origin": ALLOWED}) is None
    assert policy.websocket_refusal({"host": "h:1", "origin": FOREIGN}) is not None
    assert policy.websocket_refusal({"host": "h:1", "sec-websocket-origin": FOREIGN}) is not None


_HOSTS = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True)


@given(host=_HOSTS, port=st.integers(1, 65534), scheme=st.sampled_from(["http", "https"]))
def test_an_origin_is_its_own_host_and_no_other_port(host: str, port: int, scheme: str) -> None:
    policy = OriginPolicy()
    origin = f"{scheme}://{host}:{port}"
    assert policy.accepts(origin, f"{host}:{port}")
    assert not policy.accepts(origin, f"{host}:{port + 1}")
    assert not policy.accepts(origin, f"{host}x:{port}")


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
_HEADER_TEXT = st.one_of(
    _TEXT,
    st.text(string.printable, max_size=60),
    st.sampled_from(
        [
            "http://[::1",
            "http://:80",
            "http://h:99999",
            "://",
            "http://",
            "[::1]:x",
            "null",
        ]
    ),
)


@given(
    headers=st.dictionaries(
        st.sampled_from(["host", "origin", "referer", "sec-fetch-site", "sec-websocket-origin"]),
        _HEADER_TEXT,
    ),
    changes_state=st.booleans(),
    patterns=st.lists(st.sampled_from(MOONRAKER_STYLE), max_size=3),
)
def test_arbitrary_headers_get_an_answer(
    headers: dict[str, str], changes_state: bool, patterns: list[str]
) -> None:
    policy = OriginPolicy.from_config(patterns)
    reason = policy.refusal(headers, changes_state=changes_state)
    assert reason is None or reason.startswith(REFUSED_PREFIX)
    if headers.get("origin", "").strip() and reason is None:
        assert policy.accepts(headers["origin"].strip(), headers.get("host"))
    ws = policy.websocket_refusal(headers)
    assert ws is None or ws.startswith(REFUSED_PREFIX)


# --- in-process: the Quart app and the Router of a whole instance --------------------------


def whole_instance(tmp_path: Path, authorization: str = "") -> Instance:
    """Built, not started: refused requests never reach a component."""
    conf = tmp_path / "trioprint.conf"
    conf.write_text(f"[authorization]\n{authorization}\n")
    return Instance(load_config(conf, tmp_path))


async def http(
    instance: Instance,
    method: str,
    path: str,
    headers: Mapping[str, str],
    *,
    client: tuple[str, int] = LOOPBACK,
    **kwargs: Any,
) -> tuple[int, Any]:
    response = await instance.http_app.test_client().open(
        path, method=method, headers=dict(headers), scope_base={"client": client}, **kwargs
    )
    return response.status_code, json.loads(await response.get_data())


def is_refusal(status: int, body: Any) -> bool:
    return status == 403 and body["error"]["message"].startswith(REFUSED_PREFIX)


#: One request of each route kind that changes state (the registry, a GET the registry serves
#: like a POST, the file routes, both uploads, the OctoPrint emulation).
STATE_CHANGING = [
    ("POST", "/printer/gcode/script?script=M118%20x"),
    ("GET", "/printer/gcode/script?script=M118%20x"),
    ("GET", "/printer/emergency_stop"),
    ("POST", "/server/database/item?namespace=t&key=k&value=v"),
    ("DELETE", "/server/files/gcodes/a.gcode"),
    ("POST", "/server/files/upload"),
    ("POST", "/api/files/local"),
    ("POST", "/api/printer/command"),
    ("POST", "/access/api_key"),
]
READ_ONLY = [
    ("GET", "/server/info"),
    ("GET", "/server/files/gcodes/a.gcode"),
    ("GET", "/api/version"),
]


async def test_a_foreign_origin_is_refused_on_every_route_kind(tmp_path: Path) -> None:
    instance = whole_instance(tmp_path)
    for origin in (FOREIGN, "null", "http://127.0.0.1:9999"):  # another loopback port too
        for method, path in STATE_CHANGING:
            for content_type in ("text/plain", "application/x-www-form-urlencoded"):
                headers = {"Origin": origin, "Content-Type": content_type}
                status, body = await http(instance, method, path, headers, data=b"x=1")
                assert is_refusal(status, body), (origin, method, path, status, body)
                assert repr(origin) in body["error"]["message"]
        for method, path in READ_ONLY:
            status, body = await http(instance, method, path, {"Origin": origin})
            assert is_refusal(status, body), (origin, method, path)


async def test_a_foreign_referer_or_a_cross_site_fetch_without_origin_is_refused(
    tmp_path: Path,
) -> None:
    instance = whole_instance(tmp_path)
    for method, path in STATE_CHANGING:
        for headers in (
            {"Referer": "http://evil.example/attack.html"},
            {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},  # <img>, no referrer
        ):
            status, body = await http(instance, method, path, headers)
            assert is_refusal(status, body), (method, path, headers)
    # reading is not changing: a link from another page to a download still works
    for method, path in READ_ONLY:
        status, body = await http(instance, method, path, {"Referer": "http://evil.example/"})
        assert not is_refusal(status, body), (method, path)


async def test_a_refused_request_is_not_authenticated_first(tmp_path: Path) -> None:
    """403 before 401: the origin decides before credentials are even looked at, from any
    address; the CORS headers are not given to a foreign origin."""
    instance = whole_instance(tmp_path)
    response = await instance.http_app.test_client().open(
        "/printer/gcode/script?script=G28",
        method="POST",
        headers={"Origin": FOREIGN, "X-Api-Key": "wrong"},
        scope_base={"client": UNTRUSTED},
    )
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_accepted_origins_pass_to_authentication(tmp_path: Path) -> None:
    instance = whole_instance(tmp_path, f"cors_domains:\n  {ALLOWED}")
    for origin in (ALLOWED, "http://192.168.1.5:7125"):
        headers = {"Origin": origin, "Host": "192.168.1.5:7125"}
        # untrusted: the answer is authentication's 401, not the origin's 403
        status, body = await http(instance, "POST", "/access/api_key", headers, client=UNTRUSTED)
        assert (status, body["error"]["message"]) == (401, "Unauthorized"), origin
    # the host's own origin, but not through this Host: foreign
    headers = {"Origin": "http://192.168.1.5", "Host": "192.168.1.5:7125"}
    assert is_refusal(*await http(instance, "POST", "/access/api_key", headers))


async def handshake(
    router: Router, headers: Mapping[str, str], *, denial_extension: bool = True
) -> list[dict[str, Any]]:
    """One websocket handshake through the Router, as hypercorn hands it over; the messages
    the application sends back until it accepts or refuses."""
    to_app, app_in = trio.open_memory_channel[dict[str, Any]](math.inf)
    app_out, from_app = trio.open_memory_channel[dict[str, Any]](math.inf)
    scope = {
        "type": "websocket",
        "path": "/websocket",
        "client": LOOPBACK,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "extensions": {"websocket.http.response": {}} if denial_extension else {},
    }
    to_app.send_nowait({"type": "websocket.connect"})
    sent: list[dict[str, Any]] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(router, scope, app_in.receive, app_out.send)
            while True:
                message = await from_app.receive()
                sent.append(message)
                if message["type"] == "websocket.accept":
                    to_app.send_nowait({"type": "websocket.disconnect", "code": 1000})
                    break
                if message["type"] == "websocket.close":
                    break
                if message["type"] == "websocket.http.response.body" and not message.get(
                    "more_body", False
                ):
                    break
    return sent


async def test_websocket_handshake_origin_on_the_router(tmp_path: Path) -> None:
    instance = whole_instance(tmp_path, f"cors_domains:\n  {ALLOWED}")
    router = Router(instance.http_app, instance.websockets)
    host = {"Host": "192.168.1.5:7125"}
    for accepted in ({}, {"Origin": ALLOWED}, {"Origin": "http://192.168.1.5:7125"}):
        sent = await handshake(router, host | accepted)
        assert sent[0]["type"] == "websocket.accept", accepted
    for refused in (
        {"Origin": FOREIGN},
        {"Origin": "null"},
        {"Origin": "http://192.168.1.5"},
        {"Sec-WebSocket-Origin": FOREIGN},
    ):
        start, body = await handshake(router, host | refused)
        assert (start["type"], start["status"]) == ("websocket.http.response.start", 403)
        error = json.loads(body["body"])["error"]
        assert error["code"] == 403
        assert error["message"].startswith(REFUSED_PREFIX)
    # a server without ASGI's denial response: a close before the accept (hypercorn: 403)
    sent = await handshake(router, host | {"Origin": FOREIGN}, denial_extension=False)
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert instance.websockets.count == 0


# --- a live server: what a browser on another site can and cannot do ------------------------


async def rejected_handshake(port: int, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """A websocket handshake the server is expected to refuse: its status and body (a bare
    wsproto client, which closes its socket; trio-websocket's leaves it open on a refusal)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        request = Request(host=f"127.0.0.1:{port}", target="/websocket", extra_headers=headers)
        await stream.send_all(ws.send(request))
        status, body = 0, b""
        while data := await stream.receive_some():
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        return status, body
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        return status, body
        return status, body


async def test_live_a_foreign_page_cannot_drive_the_printer(tmp_path: Path) -> None:
    """The issue's case: loopback trusted (the default), a page on another site posts G-code
    as text/plain (no preflight) and opens the websocket; it is refused, and the frontend's
    own host, an allowed origin and a client without Origin still do the same."""
    conf = tmp_path / "trioprint.conf"
    conf.write_text(f"[authorization]\ncors_domains:\n  {ALLOWED}\n[simulator]\nspeed: 20\n")
    gcodes = tmp_path / "gcodes"
    gcodes.mkdir()
    async with live_server(tmp_path, conf) as live, httpx.AsyncClient(base_url=live.http) as web:
        with trio.fail_after(30):
            await live.instance.klippy.wait_ready()
            kinds: dict[str, dict[str, str]] = {
                "foreign": {"Origin": FOREIGN},
                "allowed": {"Origin": ALLOWED},
                "same host": {"Origin": "http://printer.lan:7125", "Host": "printer.lan:7125"},
                "no origin": {},
            }
            for kind, headers in kinds.items():
                tag = kind.replace(" ", "_")
                (gcodes / f"{tag}.gcode").write_text("G28\n")
                answers = {
                    "script": await web.post(
                        f"/printer/gcode/script?script=M118%20{tag}",
                        headers=headers | {"Content-Type": "text/plain"},
                    ),
                    "script by GET": await web.get(
                        f"/printer/gcode/script?script=M118%20get_{tag}", headers=headers
                    ),
                    "database": await web.post(
                        f"/server/database/item?namespace=origins&key={tag}&value=1",
                        headers=headers | {"Content-Type": "text/plain"},
                    ),
                    "download": await web.get(f"/server/files/gcodes/{tag}.gcode", headers=headers),
                    "upload": await web.post(
                        "/server/files/upload",
                        headers=headers,
                        files={"file": (f"up_{tag}.gcode", b"G28\n")},
                    ),
                    "octoprint upload": await web.post(
                        "/api/files/local",
                        headers=headers,
                        files={"file": (f"op_{tag}.gcode", b"G28\n")},
                    ),
                    "octoprint command": await web.post(
                        "/api/printer/command",
                        headers=headers,
                        json={"commands": [f"M118 op_{tag}"]},
                    ),
                    "octoprint version": await web.get("/api/version", headers=headers),
                    "delete": await web.delete(
                        f"/server/files/gcodes/{tag}.gcode", headers=headers
                    ),
                }
                for name, answer in answers.items():
                    if kind == "foreign":
                        assert answer.status_code == 403, (name, answer.text)
                        assert answer.json()["error"]["message"].startswith(REFUSED_PREFIX)
                        assert "access-control-allow-origin" not in answer.headers
                    else:
                        assert answer.status_code in (200, 201), (kind, name, answer.text)
                        if kind == "allowed":
                            assert answer.headers["access-control-allow-origin"] == ALLOWED
                ws_headers = [(k.encode(), v.encode()) for k, v in headers.items() if k != "Host"]
                if kind == "same host":
                    ws_headers = [(b"Origin", f"http://127.0.0.1:{live.port}".encode())]
                if kind == "foreign":
                    status, body = await rejected_handshake(live.port, ws_headers)
                    assert status == 403
                    assert json.loads(body)["error"]["message"].startswith(REFUSED_PREFIX)
                else:
                    async with open_websocket_url(live.ws, extra_headers=ws_headers) as ws:
                        client = RpcClient(ws)
                        reply = await client.call(
                            "server.database.post_item",
                            {"namespace": "origins", "key": f"ws_{tag}", "value": 1},
                        )
                        assert "result" in reply, reply

            items = (await web.get("/server/database/item?namespace=origins")).json()["result"]
            store = (await web.get("/server/gcode_store?count=200")).json()["result"]
    ran = " ".join(e["message"] for e in store["gcode_store"] if e["type"] == "command")
    for tag in ("allowed", "same_host", "no_origin"):
        assert tag in items["value"]
        assert f"ws_{tag}" in items["value"]
        assert f"M118 {tag}" in ran
        assert f"M118 get_{tag}" in ran
        assert f"M118 op_{tag}" in ran
        assert (gcodes / f"up_{tag}.gcode").exists()
        assert (gcodes / f"op_{tag}.gcode").exists()
        assert not (gcodes / f"{tag}.gcode").exists()  # deleted
    assert "foreign" not in items["value"]
    assert "ws_foreign" not in items["value"]
    assert "foreign" not in ran
    assert not (gcodes / "up_foreign.gcode").exists()
    assert not (gcodes / "op_foreign.gcode").exists()
    assert (gcodes / "foreign.gcode").exists()  # not deleted

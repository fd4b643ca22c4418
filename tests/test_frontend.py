"""A built frontend served by trioprint itself ([frontend] path), on a live server."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from trioprint.app import Options, Server, read_config
from trioprint.cli import parse_args

from .live import Live

INDEX = b"<!doctype html><title>app</title><script src=/assets/index-CElP2RIv.js></script>"
SCRIPT = b"console.log('hello');" * 50


def make_dist(root: Path) -> Path:
    dist = root / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "fonts").mkdir()
    (dist / "index.html").write_bytes(INDEX)
    (dist / "config.json").write_text('{"instancesDB": "moonraker"}')
    (dist / "assets" / "index-CElP2RIv.js").write_bytes(SCRIPT)
    (dist / "assets" / "index-CElP2RIv.js.gz").write_bytes(gzip.compress(SCRIPT))
    (dist / "assets" / "index-CElP2RIv.js.br").write_bytes(b"not really brotli")
    (dist / "assets" / "style-Bx1_y2Zq.css").write_text("body{}")
    (dist / "fonts" / "roboto.woff2").write_bytes(b"wOF2")
    (dist / "manifest.webmanifest").write_text("{}")
    (dist / "sw.js").write_text("self")
    (dist / ".hidden").write_text("no")
    (root / "secret.txt").write_text("top secret")
    return dist


@asynccontextmanager
async def served(tmp_path: Path, extra: str = "") -> AsyncIterator[Live]:
    dist = make_dist(tmp_path)
    conf = tmp_path / "trioprint.conf"
    conf.write_text(f"[frontend]\npath: {dist.name}\n{extra}")  # relative to the config file
    data = tmp_path / "data"
    server = Server(Options(data_dir=data, config_file=conf, host="127.0.0.1", port=0))
    async with trio.open_nursery() as nursery:
        instance = await nursery.start(server.run)
        yield Live(server, instance)
        server.stop()


async def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """A GET of ``target`` exactly as written (clients normalise ``..`` away)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode("latin-1"))
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in lines[1:])
        length = int({k.lower(): v for k, v in fields.items()}["content-length"])
        while len(body) < length:
            body += await stream.receive_some(65536)
    return int(lines[0].split()[1]), body


async def test_index_assets_and_api_precedence(tmp_path: Path) -> None:
    async with served(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as client:
        root = await client.get("/")
        assert root.status_code == 200
        assert root.content == INDEX
        assert root.headers["content-type"] == "text/html; charset=utf-8"
        assert root.headers["cache-control"] == "no-cache"
        # a route of the single-page app
        route = await client.get("/console")
        assert route.content == INDEX
        assert (await client.get("/config.json")).headers["cache-control"] == "no-cache"
        js = await client.get("/assets/index-CElP2RIv.js", headers={"accept-encoding": "identity"})
        assert js.content == SCRIPT
        assert js.headers["content-type"] == "application/javascript; charset=utf-8"
        assert js.headers["cache-control"] == "public, max-age=31536000, immutable"
        for path, mime in [
            ("/assets/style-Bx1_y2Zq.css", "text/css; charset=utf-8"),
            ("/fonts/roboto.woff2", "font/woff2"),
            ("/manifest.webmanifest", "application/manifest+json; charset=utf-8"),
        ]:
            r = await client.get(path)
            assert r.headers["content-type"] == mime, path
        assert (await client.get("/sw.js")).headers["cache-control"] == "no-cache"
        # a missing hashed asset is a 404, not the index
        assert (await client.get("/assets/gone-CElP2RIv.js")).status_code == 404
        # the API keeps its paths, unknown ones too
        info = await client.get("/server/info")
        assert "result" in info.json()
        unknown = await client.get("/server/nothing")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == 404
        assert (await client.get("/printer/nothing")).status_code == 404
        assert (await client.post("/console")).status_code == 404


async def test_precompressed_conditional_range_head(tmp_path: Path) -> None:
    async with served(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as client:
        gz = await client.get("/assets/index-CElP2RIv.js", headers={"accept-encoding": "gzip"})
        assert gz.headers["content-encoding"] == "gzip"
        assert gz.headers["vary"] == "Accept-Encoding"
        assert gz.content == SCRIPT  # httpx decoded the .gz sibling
        br = await client.get("/assets/index-CElP2RIv.js", headers={"accept-encoding": "br, gzip"})
        assert br.headers["content-encoding"] == "br"
        etag = gz.headers["etag"]
        again = await client.get(
            "/assets/index-CElP2RIv.js",
            headers={"accept-encoding": "gzip", "if-none-match": etag},
        )
        assert again.status_code == 304
        assert again.content == b""
        index = await client.get("/")
        since = await client.get("/", headers={"if-modified-since": index.headers["last-modified"]})
        assert since.status_code == 304
        part = await client.get("/assets/index-CElP2RIv.js", headers={"range": "bytes=0-6"})
        assert part.status_code == 206
        assert part.content == SCRIPT[:7]
        assert part.headers["content-range"] == f"bytes 0-6/{len(SCRIPT)}"
        past = await client.get("/", headers={"range": "bytes=99999-"})
        assert past.status_code == 416
        head = await client.head("/assets/index-CElP2RIv.js", headers={"accept-encoding": ""})
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(SCRIPT))


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/..%5csecret.txt",
        "/%252e%252e/secret.txt",
        "/.hidden",
    ],
)
async def test_no_path_traversal(tmp_path: Path, target: str) -> None:
    async with served(tmp_path) as live:
        status, body = await raw_get(live.port, target)
        assert b"top secret" not in body
        assert body != b"no"
        assert status in (200, 400, 404)  # 200: the app's index for a name it does not have
        if status == 200:
            assert body == INDEX


async def test_files_need_no_credentials_but_the_api_does(tmp_path: Path) -> None:
    extra = "[authorization]\ntrust_loopback: false\n"
    async with served(tmp_path, extra) as live, httpx.AsyncClient(base_url=live.http) as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/assets/index-CElP2RIv.js")).status_code == 200
        assert (await client.get("/server/info")).status_code == 401


async def test_without_frontend_root_is_the_api_404(tmp_path: Path) -> None:
    server = Server(Options(data_dir=tmp_path, host="127.0.0.1", port=0))
    async with trio.open_nursery() as nursery:
        instance = await nursery.start(server.run)
        live = Live(server, instance)
        async with httpx.AsyncClient(base_url=live.http) as client:
            r = await client.get("/")
            assert r.status_code == 404
            assert r.json()["error"]["code"] == 404
        server.stop()


async def test_missing_folder_is_a_warning(tmp_path: Path) -> None:
    conf = tmp_path / "trioprint.conf"
    conf.write_text("[frontend]\npath: /nonexistent/dist\n")
    server = Server(Options(data_dir=tmp_path, config_file=conf, host="127.0.0.1", port=0))
    async with trio.open_nursery() as nursery:
        instance = await nursery.start(server.run)
        assert any("[frontend] path" in w for w in instance.warnings)
        server.stop()


def test_cli_frontend_overrides_the_config(tmp_path: Path) -> None:
    args = parse_args(["--frontend", str(tmp_path / "dist")])
    assert args.frontend == tmp_path / "dist"
    options = Options(data_dir=tmp_path, frontend=tmp_path / "dist")
    assert read_config(options).frontend.path == str(tmp_path / "dist")

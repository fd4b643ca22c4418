"""The frontend's path and header logic (domain/static_files.py)."""

from __future__ import annotations

import pytest

from trioprint.domain.static_files import (
    CACHE_HASHED,
    CACHE_REVALIDATE,
    FileInfo,
    RangeNotSatisfiable,
    cache_control,
    choose_encoding,
    content_type,
    http_date,
    is_api_path,
    make_etag,
    not_modified,
    parse_range,
    plan,
    safe_relative,
    spa_fallback,
)

INFO = FileInfo(1000, 1_700_000_000_123_456_789)
GZ = FileInfo(300, 1_700_000_001_000_000_000)
BR = FileInfo(250, 1_700_000_002_000_000_000)


@pytest.mark.parametrize(
    ("path", "api"),
    [
        ("/server/info", True),
        ("/server", True),
        ("/printer/objects/list", True),
        ("/machine/x", True),
        ("/access/login", True),
        ("/api/version", True),
        ("/websocket", True),
        ("/debug/x", True),
        ("/serverless", False),
        ("/", False),
        ("/assets/index-abc.js", False),
        ("/console", False),
    ],
)
def test_api_paths(path: str, api: bool) -> None:
    assert is_api_path(path) is api


@pytest.mark.parametrize(
    ("path", "rel"),
    [
        ("/", ""),
        ("/index.html", "index.html"),
        ("/assets//a.js", "assets/a.js"),
        ("/../etc/passwd", None),
        ("/assets/../../secret", None),
        ("/..", None),
        ("/a/./b", None),
        ("/.git/config", None),
        ("/a\\..\\b", None),
        ("/a\x00b", None),
        ("/C:/windows", None),
        ("/%2e%2e/secret", "%2e%2e/secret"),  # a literal name once decoded: stays inside
    ],
)
def test_safe_relative(path: str, rel: str | None) -> None:
    assert safe_relative(path) == rel


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("assets/index-CElP2RIv.js", "application/javascript; charset=utf-8"),
        ("a.css", "text/css; charset=utf-8"),
        ("img/logo.svg", "image/svg+xml"),
        ("fonts/roboto.woff2", "font/woff2"),
        ("manifest.webmanifest", "application/manifest+json; charset=utf-8"),
        ("config.json", "application/json; charset=utf-8"),
        ("icon.png", "image/png"),
        ("favicon.ico", "image/x-icon"),
        ("index.html", "text/html; charset=utf-8"),
        ("README", "application/octet-stream"),
        ("x.UNKNOWN", "application/octet-stream"),
    ],
)
def test_content_type(name: str, expected: str) -> None:
    assert content_type(name) == expected


@pytest.mark.parametrize(
    ("rel", "policy"),
    [
        ("assets/index-CElP2RIv.js", CACHE_HASHED),
        ("assets/anything.css", CACHE_HASHED),
        ("workbox-71725de1.js", CACHE_HASHED),
        ("index.html", CACHE_REVALIDATE),
        ("config.json", CACHE_REVALIDATE),
        ("sw.js", CACHE_REVALIDATE),
        ("manifest.webmanifest", CACHE_REVALIDATE),
        ("fonts/roboto-semibold.woff2", CACHE_REVALIDATE),  # a word, not a hash
        ("img/logo.svg", CACHE_REVALIDATE),
    ],
)
def test_cache_control(rel: str, policy: str) -> None:
    assert cache_control(rel) == policy


def test_spa_fallback() -> None:
    assert spa_fallback("console")
    assert spa_fallback("")
    assert not spa_fallback("assets/gone-CElP2RIv.js")


@pytest.mark.parametrize(
    ("header", "available", "chosen"),
    [
        ("gzip, deflate, br", {"gzip", "br"}, "br"),
        ("gzip, br;q=0.5", {"gzip", "br"}, "gzip"),
        ("gzip", {"br"}, None),
        ("br;q=0, gzip", {"gzip", "br"}, "gzip"),
        ("*", {"gzip"}, "gzip"),
        ("identity", {"gzip", "br"}, None),
        (None, {"gzip"}, None),
        ("gzip;q=bad", {"gzip"}, None),
    ],
)
def test_choose_encoding(header: str | None, available: set[str], chosen: str | None) -> None:
    assert choose_encoding(header, available) == chosen


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        (None, 10, None),
        ("bytes=0-3", 10, (0, 4)),
        ("bytes=5-", 10, (5, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=2-100", 10, (2, 10)),
        ("bytes=4-2", 10, None),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=-", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, span: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == span


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=-0", "bytes=99-100"])
def test_unsatisfiable_range(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 10)


def test_conditionals() -> None:
    etag = make_etag(INFO)
    assert not_modified({"if-none-match": etag}, etag, INFO.mtime_ns)
    assert not_modified({"if-none-match": f'"x", W/{etag}'}, etag, INFO.mtime_ns)
    assert not_modified({"if-none-match": "*"}, etag, INFO.mtime_ns)
    assert not not_modified({"if-none-match": '"other"'}, etag, INFO.mtime_ns)
    date = http_date(INFO.mtime_ns)
    assert not_modified({"if-modified-since": date}, etag, INFO.mtime_ns)
    assert not not_modified({"if-modified-since": http_date(0)}, etag, INFO.mtime_ns)
    assert not not_modified({"if-modified-since": "garbage"}, etag, INFO.mtime_ns)
    # If-None-Match wins over If-Modified-Since
    assert not not_modified(
        {"if-none-match": '"other"', "if-modified-since": date}, etag, INFO.mtime_ns
    )


def test_plan_plain_and_head() -> None:
    answer = plan("GET", "index.html", {"": INFO}, {})
    assert answer.status == 200
    assert (answer.file, answer.start, answer.end) == ("index.html", 0, 1000)
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["Cache-Control"] == "no-cache"
    assert answer.headers["Content-Length"] == "1000"
    assert answer.headers["ETag"] == make_etag(INFO)
    assert answer.headers["Last-Modified"] == http_date(INFO.mtime_ns)
    assert "Vary" not in answer.headers
    head = plan("HEAD", "index.html", {"": INFO}, {})
    assert head.file is None
    assert head.headers == answer.headers


def test_plan_precompressed() -> None:
    variants = {"": INFO, "gzip": GZ, "br": BR}
    br = plan("GET", "assets/a-CElP2RIv.js", variants, {"accept-encoding": "gzip, br"})
    assert br.file == "assets/a-CElP2RIv.js.br"
    assert br.headers["Content-Encoding"] == "br"
    assert br.headers["Vary"] == "Accept-Encoding"
    assert br.headers["Content-Length"] == "250"
    assert br.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert br.headers["Cache-Control"] == CACHE_HASHED
    gz = plan("GET", "assets/a-CElP2RIv.js", variants, {"accept-encoding": "gzip"})
    assert gz.file == "assets/a-CElP2RIv.js.gz"
    assert gz.headers["ETag"] != br.headers["ETag"]
    plain = plan("GET", "assets/a-CElP2RIv.js", variants, {})
    assert plain.file == "assets/a-CElP2RIv.js"
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["Vary"] == "Accept-Encoding"


def test_plan_304_and_ranges() -> None:
    etag = make_etag(INFO)
    cached = plan("GET", "x.js", {"": INFO}, {"if-none-match": etag})
    assert cached.status == 304
    assert cached.file is None
    part = plan("GET", "x.js", {"": INFO, "gzip": GZ}, {"range": "bytes=10-19"})
    assert (part.status, part.file, part.start, part.end) == (206, "x.js", 10, 20)
    assert part.headers["Content-Range"] == "bytes 10-19/1000"
    assert part.headers["Content-Length"] == "10"
    bad = plan("GET", "x.js", {"": INFO}, {"range": "bytes=5000-"})
    assert bad.status == 416
    assert bad.headers["Content-Range"] == "bytes */1000"
    stale = plan("GET", "x.js", {"": INFO}, {"range": "bytes=0-1", "if-range": '"old"'})
    assert stale.status == 200
    fresh = plan("GET", "x.js", {"": INFO}, {"range": "bytes=0-1", "if-range": etag})
    assert fresh.status == 206

"""POST /server/files/upload: streamed, checked, atomic, as Moonraker answers it."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from .test_sim import WAIT, collector, sim_server

GCODE = b"G28\nG1 X10 Y10 F3000\n" * 2000


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".upload-*")]


async def test_upload_to_a_folder_answers_201_with_location(tmp_path: Path) -> None:
    async with (
        sim_server(tmp_path) as live,
        httpx.AsyncClient(base_url=live.http) as http,
        collector(live) as c,
    ):
        with trio.fail_after(WAIT):
            response = await http.post(
                "/server/files/upload",
                files={"file": ("cube.gcode", GCODE)},
                data={
                    "root": "gcodes",
                    "path": "parts/new",
                    "checksum": hashlib.sha256(GCODE).hexdigest(),
                },
            )
            note = await c.wait(lambda m: m.get("method") == "notify_filelist_changed")
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["action"] == "create_file"
    assert result["item"]["path"] == "parts/new/cube.gcode"
    assert result["item"]["root"] == "gcodes"
    assert result["item"]["size"] == len(GCODE)
    assert result["print_started"] is False
    assert result["print_queued"] is False
    assert response.headers["location"].endswith("/server/files/gcodes/parts/new/cube.gcode")
    assert note["params"][0]["item"]["path"] == "parts/new/cube.gcode"
    assert (tmp_path / "gcodes" / "parts" / "new" / "cube.gcode").read_bytes() == GCODE
    assert leftovers(tmp_path) == []


async def test_a_bad_checksum_is_422_and_leaves_nothing(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
        (tmp_path / "gcodes" / "keep.gcode").write_bytes(b"old")
        with trio.fail_after(WAIT):
            response = await http.post(
                "/server/files/upload",
                files={"file": ("keep.gcode", GCODE)},
                data={"checksum": "0" * 64},
            )
    assert response.status_code == 422
    assert "checksum" in response.json()["error"]["message"]
    assert (tmp_path / "gcodes" / "keep.gcode").read_bytes() == b"old"  # untouched
    assert leftovers(tmp_path) == []


async def test_refused_uploads_name_the_problem(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
        with trio.fail_after(WAIT):
            escape = await http.post(
                "/server/files/upload",
                files={"file": ("x.gcode", b"G28\n")},
                data={"path": "../gcodes_evil"},
            )
            extension = await http.post(
                "/server/files/upload", files={"file": ("evil.sh", b"rm -rf /\n")}
            )
            not_multipart = await http.post("/server/files/upload", content=b"G28\n")
            no_file = await http.post("/server/files/upload", data={"root": "gcodes"}, files={})
    assert escape.status_code == 403
    assert extension.status_code == 400
    assert "extension" in extension.json()["error"]["message"]
    assert not_multipart.status_code == 415
    assert no_file.status_code in (400, 415)
    assert not (tmp_path / "gcodes_evil").exists()
    assert leftovers(tmp_path) == []


async def test_a_cut_off_upload_leaves_no_partial_file(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live:
        boundary = "XyZ"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="half.gcode"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", live.port)
            request = (
                b"POST /server/files/upload HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: multipart/form-data; boundary=XyZ\r\n"
                b"Content-Length: 1000000\r\n\r\n" + head + GCODE[:5000]
            )
            await stream.send_all(request)
            await trio.sleep(0.5)  # the server is now spooling the part
            await stream.aclose()  # the client goes away in the middle
            for _ in range(50):
                if not leftovers(tmp_path):
                    break
                await trio.sleep(0.1)
    assert not (tmp_path / "gcodes" / "half.gcode").exists()
    assert leftovers(tmp_path) == []


async def test_upload_and_print(tmp_path: Path) -> None:
    body = b"M109 S200\nG28\nG1 X10 Y10 F3000\n"
    async with (
        sim_server(tmp_path, speed=50.0) as live,
        httpx.AsyncClient(base_url=live.http) as http,
        collector(live) as c,
    ):
        with trio.fail_after(WAIT):
            await c.result("printer.objects.subscribe", {"objects": {"print_stats": None}})
            response = await http.post(
                "/server/files/upload",
                files={"file": ("go.gcode", body)},
                data={"print": "true"},
            )
            await c.wait(
                lambda m: (
                    m.get("method") == "notify_status_update"
                    and m["params"][0].get("print_stats", {}).get("filename") == "go.gcode"
                )
            )
    assert response.status_code == 201
    assert response.json()["print_started"] is True


async def test_max_upload_size_is_413(tmp_path: Path) -> None:
    from .live import live_server

    conf = tmp_path / "t.conf"
    conf.write_text("[server]\nmax_upload_size: 1\n")
    body = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.gcode"\r\n\r\n'
        + b"G1 X1\n" * 300_000
        + b"\r\n--B--\r\n"
    )
    request = (
        b"POST /server/files/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: multipart/form-data; boundary=B\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    answer = b""
    async with live_server(tmp_path, conf) as live:
        with trio.fail_after(WAIT):
            # a raw client: it is answered (and may be cut off) before it has sent everything
            async with await trio.open_tcp_stream("127.0.0.1", live.port) as stream:
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(request)
                with contextlib.suppress(trio.BrokenResourceError):
                    # until the JSON error body is complete (the server may keep the socket)
                    while not answer.endswith(b"}}") and (data := await stream.receive_some()):
                        answer += data
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"code":413' in answer
    assert not (tmp_path / "gcodes" / "big.gcode").exists()
    assert leftovers(tmp_path) == []


async def test_large_chunks_and_oversized_fields(tmp_path: Path) -> None:
    """The server may hand over much more than the decoder holds at once (all that arrived
    since the last read): a 3 MB chunk is decoded in slices; a form field over the fields'
    limit is a 413."""
    from trioprint.components.uploads import MAX_FIELDS_SIZE, Upload, receive
    from trioprint.errors import ApiError

    payload = b"G1 X1 Y2\n" * 350_000
    body = (
        b'--B\r\nContent-Disposition: form-data; name="path"\r\n\r\nsub\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.gcode"\r\n\r\n'
        + payload
        + b'\r\n--B\r\nContent-Disposition: form-data; name="checksum"\r\n\r\n'
        + hashlib.sha256(payload).hexdigest().encode()
        + b"\r\n--B--\r\n"
    )

    async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
        yield data

    upload = Upload(str(tmp_path))
    await receive(upload, one_chunk(body), b"B")
    upload.close()
    assert await trio.Path(upload.tmp_path).read_bytes() == payload
    assert upload.sha256.hexdigest() == upload.fields["checksum"]
    assert upload.fields["path"] == "sub"
    assert upload.size == len(payload)

    field = b"x" * (MAX_FIELDS_SIZE + 1)
    big_field = (
        b'--B\r\nContent-Disposition: form-data; name="path"\r\n\r\n' + field + b"\r\n--B--\r\n"
    )
    upload = Upload(str(tmp_path))
    try:
        with pytest.raises(ApiError) as exc:
            await receive(upload, one_chunk(big_field), b"B")
        assert exc.value.status == 413
    finally:
        upload.discard()

"""Issue #5 item 6: big files do not block the server.

One live server (in this process, real hypercorn on 127.0.0.1) lists 10,000 files, receives a
1 GiB upload streamed from a generator through HTTP (never held in memory: the test checks the
process's peak memory) and extracts the metadata of a 1 GiB (sparse) G-code file, while a
websocket client keeps asking ``server.info``. For each operation the test asserts that
answers arrived while it was in progress. Listing and extraction are short, so their work is
held in its worker thread until the event loop has answered one more ``server.info``: that
could not happen if the work ran on (or blocked) the event loop. The upload takes seconds; the
answers that arrive meanwhile are counted as they come.

It writes 2 GiB of (partly sparse) files and removes them at the end.
"""

from __future__ import annotations

import hashlib
import resource
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from trioprint.components import files as files_module
from trioprint.domain import metadata as md

from .live import Live, live_server, rpc_client

CORPUS = Path(__file__).parent / "data" / "metadata" / "prusaslicer.gcode"
MIB = 1024 * 1024
GIB = 1024 * MIB
FILES = 10_000
WAIT = 600.0  # real seconds: a bound on the whole test, not a timing assertion

pytestmark = pytest.mark.slow


class Pinger:
    """A websocket client asking ``server.info`` again and again, counting the answers."""

    def __init__(self) -> None:
        self.answers = 0
        self._changed = trio.Event()

    async def run(self, live: Live, *, task_status: trio.TaskStatus[None]) -> None:
        async with rpc_client(live.ws) as client:
            task_status.started()
            while True:
                reply = await client.call("server.info")
                assert "klippy_state" in reply["result"], reply
                self.answers += 1
                self._changed.set()
                self._changed = trio.Event()

    async def one_more(self) -> None:
        """Return once an answer has arrived after this call."""
        seen = self.answers
        while self.answers == seen:
            await self._changed.wait()


def held_until_answered(pinger: Pinger, work: Callable[..., Any]) -> Callable[..., Any]:
    """``work`` (which runs in a worker thread) made to wait there for one more answer."""

    def held(*args: Any, **kwargs: Any) -> Any:
        trio.from_thread.run(pinger.one_more)
        return work(*args, **kwargs)

    return held


def make_tree(gcodes: Path) -> None:
    """10,000 small G-code files in 100 folders, and a sparse 1 GiB sliced file."""
    for d in range(100):
        folder = gcodes / f"batch{d:02d}"
        folder.mkdir(parents=True)
        for f in range(FILES // 100):
            (folder / f"part{f:03d}.gcode").write_bytes(b"G28\n")
    lines = CORPUS.read_bytes().splitlines(keepends=True)
    head, tail = b"".join(lines[:173]), b"".join(lines[173:])
    with open(gcodes / "huge.gcode", "wb") as file:
        file.write(head)
        file.seek(GIB - len(tail))
        file.write(tail)


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


BLOCK = b"".join(b"G1 X%d.5 Y%d.25 E0.0412 F1800\n" % (i % 200, i % 180) for i in range(40_000))


async def multipart(boundary: str, sha: Any, total: int) -> AsyncIterator[bytes]:
    """A multipart body with a ``total``-byte G-code file, generated as it is sent; the
    checksum field comes after the file, from the hash of what was sent."""
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.gcode"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    sent = 0
    while sent < total:
        chunk = BLOCK[: total - sent]
        sha.update(chunk)
        sent += len(chunk)
        yield chunk
    yield (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="checksum"\r\n\r\n'
        f"{sha.hexdigest()}\r\n--{boundary}--\r\n"
    ).encode()


async def test_big_files_do_not_block_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gcodes = tmp_path / "gcodes"
    await trio.to_thread.run_sync(make_tree, gcodes)
    conf = tmp_path / "trioprint.conf"
    conf.write_text("[server]\nmax_upload_size: 2048\n")
    pinger = Pinger()
    try:
        with trio.fail_after(WAIT):
            async with (
                live_server(tmp_path, conf) as live,
                httpx.AsyncClient(base_url=live.http, timeout=WAIT) as http,
                trio.open_nursery() as nursery,
            ):
                await nursery.start(pinger.run, live)
                await pinger.one_more()

                # 1. list 10,000 files
                list_files = files_module.Files._file_list
                monkeypatch.setattr(
                    files_module.Files,
                    "_file_list",
                    staticmethod(held_until_answered(pinger, list_files)),
                )
                before = pinger.answers
                listed = (await http.get("/server/files/list", params={"root": "gcodes"})).json()
                assert pinger.answers > before
                monkeypatch.setattr(files_module.Files, "_file_list", staticmethod(list_files))
                paths = [f["path"] for f in listed["result"]]
                assert len(paths) == FILES + 1  # and huge.gcode
                assert "batch99/part099.gcode" in paths

                # 2. upload 1 GiB, streamed through HTTP
                started = time.monotonic()  # reported, not asserted
                boundary = "trioprint-big-upload"
                sha = hashlib.sha256()
                rss_before = peak_rss()
                before = pinger.answers
                response = await http.post(
                    "/server/files/upload",
                    content=multipart(boundary, sha, GIB),
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                )
                during_upload = pinger.answers - before
                upload_seconds = time.monotonic() - started
                assert response.status_code == 201, response.text
                assert during_upload > 0
                result = response.json()
                assert result["item"]["path"] == "big.gcode"
                assert result["item"]["size"] == GIB
                assert (gcodes / "big.gcode").stat().st_size == GIB
                # nothing near the upload's size was held in memory
                grown = peak_rss() - rss_before
                print(f"peak RSS growth during the 1 GiB upload: {grown / MIB:.1f} MiB")
                assert grown < 64 * MIB

                # 3. metadata of a 1 GiB file
                monkeypatch.setattr(
                    md, "read_head_tail", held_until_answered(pinger, md.read_head_tail)
                )
                before = pinger.answers
                # metascan: extracted now even if the start-up scan got to it first
                meta = (
                    await http.post("/server/files/metascan", params={"filename": "huge.gcode"})
                ).json()
                assert pinger.answers > before
                assert meta["result"]["size"] == GIB
                assert meta["result"]["slicer"] == "PrusaSlicer"
                assert meta["result"]["estimated_time"] > 0
                nursery.cancel_scope.cancel()
        print(
            f"1 GiB upload: {upload_seconds:.1f} s ({GIB / MIB / upload_seconds:.0f} MiB/s), "
            f"{during_upload} server.info answers meanwhile"
        )
    finally:
        await trio.to_thread.run_sync(shutil.rmtree, gcodes, True)

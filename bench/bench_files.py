"""Files benchmark: uploads and slicer metadata, trioprint beside Moonraker 0.11 (``nox -s bench``).

Both servers run as subprocesses started the same way as in bench_api.py (a fresh data folder,
loopback trusted, no printer); the same client code drives both over HTTP.

Figures:

- upload: a 200 MB G-code file (a PrusaSlicer head and tail from tests/data/metadata around
  G-code moves), generated on disk and streamed from it through ``POST /server/files/upload``
  (multipart, Content-Length, no checksum): MB/s from the first byte sent to the 201, the
  server's CPU seconds and peak memory growth for it, the slowest ``GET /server/info`` asked
  every 10 ms meanwhile (does the upload block the server?), and the time until
  ``server.files.metadata`` answers for the file, from the upload's start and from the 201
  (polled over HTTP every 10 ms). Moonraker extracts the metadata before it answers the 201;
  trioprint right after it (or at once when asked for first).
- metadata: a 10 MB file (G-code throughout) and a 1 GB one (the same head and tail, the middle
  sparse: both servers read only the first and last MiB) are renamed into ``gcodes/``; the time
  from the rename until ``server.files.metadata`` answers (Moonraker notices the file by inotify
  and runs its extractor in a subprocess, with a 20 s timeout; trioprint extracts in a worker
  thread, when its watcher sees the file or on the first request, whichever comes first). For
  trioprint also the in-process cost of :mod:`trioprint.domain.metadata` (``read_head_tail`` +
  ``parse``, and + the thumbnails' conversion), measured in a separate process with the
  server's interpreter.

Each figure is the median of a few runs. On this 2-core machine the client competes with the
server for CPU; both servers are measured under the same conditions.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# this script runs from bench/, so bench_api is beside it on sys.path
from bench_api import CLK_TCK, Server, moonraker_command, run_server, trioprint_command, write_json

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "tests" / "data" / "metadata" / "prusaslicer.gcode"
#: Where the corpus file is cut to be padded: before its last layer.
LAST_LAYER = b"\n;LAYER_CHANGE"
MIB = 1024 * 1024
CHUNK = MIB
#: G-code lines after the head part and before the tail part: more than the 1 MiB each server
#: reads at either end, so that what they read is like a real large file's.
EDGE_FILLER = MIB + 64 * 1024
UPLOAD_SIZE = 200 * 1000 * 1000
METADATA_SIZES = {"10 MB": 10 * 1000 * 1000, "1 GB": 1000 * 1000 * 1000}
POLL_INTERVAL = 0.010
#: Seconds to wait for metadata before giving up on a run (Moonraker's extractor timeout is 20).
METADATA_TIMEOUT = 30.0
#: What went wrong during the run (printed under the table).
NOTES: list[str] = []


# --- test files -----------------------------------------------------------------------------


@functools.cache
def gcode_filler(size: int, seed: int = 0) -> bytes:
    """Whole G-code move lines, at least ``size`` bytes."""
    lines, total, i = [], 0, seed
    while total < size:
        line = b"G1 X%.3f Y%.3f E%.5f\n" % (100 + i % 997 / 10, 100 + i % 991 / 10, i % 89 / 1e3)
        lines.append(line)
        total, i = total + len(line), i + 1
    return b"".join(lines)


def write_gcode(path: Path, size: int, *, sparse: bool) -> int:
    """A PrusaSlicer file of about ``size`` bytes at ``path``; its exact size.

    The corpus file is cut before its last layer and G-code moves go between the two parts;
    with ``sparse`` the middle is a hole (zeros, never written), else more G-code moves.
    """
    data = CORPUS.read_bytes()
    cut = data.rindex(LAST_LAYER) + 1
    edge = gcode_filler(EDGE_FILLER)
    first, second = data[:cut] + edge, b"\n" + edge + data[cut:]
    with open(path, "wb") as file:
        file.write(first)
        if sparse:
            file.truncate(size - len(second))
            file.seek(0, os.SEEK_END)
        else:
            block = gcode_filler(4 * MIB, seed=7)
            left = size - len(first) - len(second)
            while left >= len(block):
                file.write(block)
                left -= len(block)
            file.write(block[: block.rfind(b"\n", 0, max(left, 0)) + 1])  # whole lines
        file.write(second)
    return path.stat().st_size


# --- HTTP client ----------------------------------------------------------------------------


def cpu_seconds(server: Server) -> float:
    """The server's CPU time, with that of the children it waited for (Moonraker's extractor)."""
    fields = Path(f"/proc/{server.pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(f) for f in fields[11:15]) / CLK_TCK


def upload(port: int, source: Path, filename: str) -> tuple[float, float]:
    """Stream ``source`` as ``gcodes/<filename>``; (start, 201) perf_counter times."""
    boundary = f"bench{uuid.uuid4().hex}"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="root"\r\n\r\n'
        "gcodes\r\n"
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + source.stat().st_size + len(tail)

    def body() -> Iterator[bytes]:
        yield head
        with open(source, "rb") as file:
            while chunk := file.read(CHUNK):
                yield chunk
        yield tail

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
        }
        started = time.perf_counter()
        conn.request("POST", "/server/files/upload", body=body(), headers=headers)
        response = conn.getresponse()
        answer = response.read()
        done = time.perf_counter()
    finally:
        conn.close()
    if response.status != 201:
        raise RuntimeError(f"upload answered {response.status}: {answer[:500]!r}")
    return started, done


def wait_metadata(port: int, filename: str, timeout: float = METADATA_TIMEOUT) -> float:
    """Poll ``GET /server/files/metadata`` every 10 ms; the perf_counter time it answered 200."""
    target = "/server/files/metadata?" + urllib.parse.urlencode({"filename": filename})
    deadline = time.perf_counter() + timeout
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        while time.perf_counter() < deadline:
            try:
                conn.request("GET", target)
                response = conn.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()  # reconnects on the next request
                time.sleep(POLL_INTERVAL)
                continue
            if response.status == 200:
                found = time.perf_counter()
                result = json.loads(answer)["result"]
                if result.get("slicer") != "PrusaSlicer":
                    raise RuntimeError(f"{filename}: unexpected metadata {result}")
                return found
            time.sleep(POLL_INTERVAL)
    finally:
        conn.close()
    raise RuntimeError(f"no metadata for {filename} within {timeout} s")


# --- measurement ----------------------------------------------------------------------------


def peak_rss_kb(server: Server) -> int:
    """The server's peak resident memory so far (VmHWM)."""
    for line in Path(f"/proc/{server.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class InfoProbe(threading.Thread):
    """``GET /server/info`` every 10 ms while running: the slowest answer (is the server free?)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.slowest = 0.0

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            while not self.stop.wait(POLL_INTERVAL):
                started = time.perf_counter()
                try:
                    conn.request("GET", "/server/info")
                    conn.getresponse().read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    continue
                self.slowest = max(self.slowest, time.perf_counter() - started)
        finally:
            conn.close()


def measure_uploads(server: Server, source: Path, runs: int) -> dict[str, float | None]:
    """Upload figures; all None (and the reason in :data:`NOTES`) if an upload fails."""
    rates, cpus, rss, info, since_start, since_201 = [], [], [], [], [], []
    size = source.stat().st_size
    try:
        for i in range(runs):
            name = f"upload-{i}.gcode"
            cpu0, rss0 = cpu_seconds(server), peak_rss_kb(server)
            probe = InfoProbe(server.port)
            probe.start()
            try:
                started, answered = upload(server.port, source, name)
            finally:
                probe.stop.set()
                probe.join()
            cpu = cpu_seconds(server) - cpu0
            found = wait_metadata(server.port, name)
            rates.append(size / 1e6 / (answered - started))
            cpus.append(cpu)
            rss.append(peak_rss_kb(server) - rss0)
            info.append(1000 * probe.slowest)
            since_start.append(1000 * (found - started))
            since_201.append(1000 * (found - answered))
            (server.data / "gcodes" / name).unlink()  # keep the disk use down
    except (RuntimeError, OSError, http.client.HTTPException) as exc:
        NOTES.append(f"{server.name}: upload failed: {exc}")
        rates, cpus, rss, info, since_start, since_201 = [], [], [], [], [], []
    return {
        "upload 200 MB MB/s": median(rates),
        "upload 200 MB server CPU s": median(cpus),
        "upload 200 MB peak RSS growth kB": median(rss),
        "server.info slowest during upload ms": median(info),
        "upload start->metadata ms": median(since_start),
        "upload 201->metadata ms": median(since_201),
    }


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure_appearing(server: Server, staging: Path, runs: int) -> dict[str, float | None]:
    """Files renamed into gcodes/: time until their metadata is served."""
    figures: dict[str, float | None] = {}
    gcodes = server.data / "gcodes"
    gcodes.mkdir(exist_ok=True)
    for label, size in METADATA_SIZES.items():
        times: list[float] = []
        try:
            for i in range(runs):
                name = f"appear-{label.replace(' ', '')}-{i}.gcode"
                write_gcode(staging / name, size, sparse=size > 100 * 1000 * 1000)
                started = time.perf_counter()
                os.rename(staging / name, gcodes / name)
                times.append(1000 * (wait_metadata(server.port, name) - started))
        except RuntimeError as exc:
            NOTES.append(f"{server.name}: metadata of a {label} file: {exc}")
            times = []
        figures[f"metadata {label} file->available ms"] = median(times)
    return figures


IN_PROCESS = """
import json, sys, time
from trioprint.domain import metadata as md
from trioprint.domain.thumbnails import thumbnail_bytes
path, runs = sys.argv[1], int(sys.argv[2])
parse, full = [], []
for _ in range(runs):
    t0 = time.perf_counter()
    meta = md.parse(*md.read_head_tail(path))
    t1 = time.perf_counter()
    for thumb in meta.thumbnails:
        thumbnail_bytes(thumb)
    t2 = time.perf_counter()
    assert meta.fields["slicer"] == "PrusaSlicer", meta.fields
    parse.append(t1 - t0)
    full.append(t2 - t0)
print(json.dumps({"parse": parse, "full": full}))
"""


def measure_in_process(python: str, staging: Path, runs: int) -> dict[str, float]:
    """trioprint.domain.metadata called directly (its page cache warm after the first run)."""
    figures: dict[str, float] = {}
    for label, size in METADATA_SIZES.items():
        path = staging / f"inproc-{label.replace(' ', '')}.gcode"
        write_gcode(path, size, sparse=size > 100 * 1000 * 1000)
        out = subprocess.run(
            [python, "-c", IN_PROCESS, str(path), str(runs)],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"in-process metadata failed:\n{out.stderr[-2000:]}")
        times = json.loads(out.stdout)
        figures[f"metadata {label} in-process parse ms"] = 1000 * statistics.median(times["parse"])
        figures[f"metadata {label} in-process +thumbs ms"] = 1000 * statistics.median(times["full"])
        path.unlink()
    return figures


def measure(server: Server, source: Path, runs: int) -> dict[str, float | None]:
    staging = server.data / "staging"  # same file system as gcodes/, outside every root
    staging.mkdir()
    figures = measure_uploads(server, source, runs)
    figures.update(measure_appearing(server, staging, runs))
    return figures


# --- table ----------------------------------------------------------------------------------


def print_table(
    ours: dict[str, float | None], peer: dict[str, float | None], higher: tuple[str, ...]
) -> None:
    """bench_api's table; ``None`` prints as n/a. Metrics ending in ``higher`` are better high."""
    width = max(len(k) for k in (*ours, *peer)) + 2
    print()
    print(f"{'metric':<{width}}{'trioprint':>12}{'moonraker':>12}{'ratio':>9}  better")
    for key in dict.fromkeys([*ours, *peer]):
        value, other = ours.get(key), peer.get(key)
        mine = f"{value:>12.2f}" if value is not None else f"{'n/a':>12}"
        theirs = f"{other:>12.2f}" if other is not None else f"{'n/a':>12}"
        if value is None or other is None or other == 0:
            print(f"{key:<{width}}{mine}{theirs}{'':>9}")
            continue
        ratio = value / other
        better = "trioprint" if (ratio > 1) == key.endswith(higher) else "moonraker"
        if abs(ratio - 1) < 0.02:
            better = "even"
        print(f"{key:<{width}}{mine}{theirs}{ratio:>9.2f}  {better}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--moonraker-bin", help="Moonraker 0.11's moonraker script")
    parser.add_argument("--python", default=sys.executable, help="interpreter with trioprint")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (the median)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)  # bench_api's; unused
    args = parser.parse_args()

    moonraker = args.moonraker_bin or shutil.which("moonraker")
    if not moonraker:
        parser.error("Moonraker not found: pass --moonraker-bin")
    started = time.monotonic()
    print(f"files bench: trioprint: {args.python} -m trioprint; moonraker: {moonraker}")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-files-") as tmp:
        source = Path(tmp) / "upload.gcode"  # outside both servers' roots, read by both
        write_gcode(source, UPLOAD_SIZE, sparse=False)
        with run_server("trioprint", trioprint_command(args.python)) as server:
            ours = measure(server, source, args.runs)
            ours.update(measure_in_process(args.python, Path(tmp), max(args.runs, 5)))
            results["trioprint"] = ours
        with run_server("moonraker", moonraker_command(moonraker)) as server:
            results["moonraker"] = measure(server, source, args.runs)
    print_table(results["trioprint"], results["moonraker"], ("MB/s",))
    print(
        "\nratio = trioprint / moonraker (MB/s: higher is better; ms, s: lower is better);"
        " in-process: trioprint.domain.metadata called directly"
    )
    for note in NOTES:
        print(f"note: {note}")
    print(f"files bench took {time.monotonic() - started:.0f} s on {os.cpu_count()} cores")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

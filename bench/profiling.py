"""Where a server's CPU goes during a bench phase: py-spy samples, grouped by package.

The benches take ``--profile DIR``: each measured phase of a server then runs under
``py-spy record --nonblocking`` (py-spy reads the process from outside and never stops it, so
the server's own CPU counters in /proc are not charged for the sampling) and its raw stacks are
written to ``DIR/<bench>-<server>-<phase>.txt``. py-spy only samples threads that are running
(a thread waiting in ``epoll`` is idle and not sampled), so the shares below are shares of the
server's busy time.

A sample is charged to the package of its innermost Python frame ("self" time): the cost of a C
function (``json``'s encoder, a socket ``send``) lands on the Python function that called it.

``python bench/profiling.py FILE...`` prints the breakdown of recorded files.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

#: (category, path prefixes of the innermost frame's file), first match wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("trioprint", ("trioprint/",)),
    ("moonraker", ("moonraker/",)),
    ("quart/werkzeug", ("quart/", "quart_trio/", "werkzeug/", "flask/")),
    ("hypercorn", ("hypercorn/",)),
    ("wsproto/h11", ("wsproto/", "h11/")),
    ("tornado", ("tornado/",)),
    ("json", ("json/",)),
    ("trio scheduler", ("trio/_core/",)),
    ("trio streams/sync", ("trio/",)),
    ("asyncio", ("asyncio/",)),
    ("logging", ("logging/",)),
)
OTHER = "other (stdlib, typing...)"


def category(frame: str) -> str:
    """The category of a py-spy frame ``function (path/file.py)``."""
    _, _, where = frame.rpartition(" (")
    where = where.rstrip(")")
    for name, prefixes in CATEGORIES:
        if any(where.startswith(p) or f"/{p}" in where for p in prefixes):
            return name
    return OTHER


def read_samples(path: Path) -> list[tuple[list[str], int]]:
    """The stacks of a py-spy ``--format raw`` file, outermost frame first, with counts."""
    samples: list[tuple[list[str], int]] = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                samples.append((stack.split(";"), int(count)))
    return samples


def breakdown(path: Path) -> tuple[int, dict[str, float], list[tuple[str, float]]]:
    """Total samples, the share (%) of each category, and the top own-time functions."""
    samples = read_samples(path)
    total = sum(c for _, c in samples)
    shares: dict[str, float] = {}
    own: dict[str, int] = {}
    for stack, count in samples:
        leaf = stack[-1]
        cat = category(leaf)
        shares[cat] = shares.get(cat, 0) + count
        own[leaf] = own.get(leaf, 0) + count
    if not total:
        return 0, {}, []
    pct = {k: 100 * v / total for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}
    top = [(f, 100 * c / total) for f, c in sorted(own.items(), key=lambda kv: -kv[1])[:12]]
    return total, pct, top


def format_breakdown(path: Path, top: int = 6) -> str:
    total, pct, functions = breakdown(path)
    if not total:
        return f"{path.name}: no samples"
    parts = ", ".join(f"{k} {v:.0f}%" for k, v in pct.items() if v >= 0.5)
    lines = [f"{path.stem}: {total} busy samples: {parts}"]
    lines += [f"      {share:4.1f}% {frame[:110]}" for frame, share in functions[:top]]
    return "\n".join(lines)


@contextlib.contextmanager
def spy(pid: int, out: Path | None, exe: str | None = None) -> Iterator[None]:
    """Record ``pid`` with py-spy into ``out`` (raw stacks) while the block runs.

    Does nothing when ``out`` is None; py-spy from ``exe``, or beside the interpreter, or PATH.
    """
    if out is None:
        yield
        return
    exe = exe or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        exe = shutil.which("py-spy") or ""
    if not exe:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [exe, "record", "--pid", str(pid), "--nonblocking", "--nolineno", "--rate", "200"]
    process = subprocess.Popen(
        [*command, "--format", "raw", "--output", str(out)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    for name in sys.argv[1:]:
        print(format_breakdown(Path(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Process and system figures from /proc, in the shapes of Moonraker's ``machine.proc_stats``,
``notify_proc_stat_update`` and ``machine.system_info``.

The parsers take file contents as strings and never raise on malformed input (a field they
cannot read is left out or zero). :func:`read_sources` and :func:`read_system_info` do the
blocking reads; callers run them in a worker thread.
"""

from __future__ import annotations

import collections
import contextlib
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

import attrs

#: How many process samples ``machine.proc_stats`` returns (one a second).
HISTORY = 30


@attrs.frozen
class Sources:
    """The raw text of the files one sample needs ("" where a file could not be read)."""

    proc_self_stat: str = ""
    proc_self_status: str = ""
    proc_stat: str = ""
    proc_meminfo: str = ""
    proc_net_dev: str = ""
    proc_uptime: str = ""
    cpu_temp: str | None = None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def read_sources() -> Sources:
    """Read the files of one sample (blocking, but only small /proc files)."""
    temp = _read("/sys/class/thermal/thermal_zone0/temp")
    return Sources(
        proc_self_stat=_read("/proc/self/stat"),
        proc_self_status=_read("/proc/self/status"),
        proc_stat=_read("/proc/stat"),
        proc_meminfo=_read("/proc/meminfo"),
        proc_net_dev=_read("/proc/net/dev"),
        proc_uptime=_read("/proc/uptime"),
        cpu_temp=temp or None,
    )


# --- parsers --------------------------------------------------------------------------------


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def parse_uptime(text: str) -> float:
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return 0.0


def parse_process_ticks(stat: str) -> int:
    """utime + stime of /proc/self/stat, in clock ticks."""
    # the command name may hold spaces and parentheses: fields start after the last ")"
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 13:
        return 0
    return _int(fields[11]) + _int(fields[12])


def parse_rss_kb(status: str) -> int:
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            return _int(parts[1]) if len(parts) > 1 else 0
    return 0


def parse_cpu_times(stat: str) -> dict[str, tuple[int, int]]:
    """``{"cpu": (busy, total), "cpu0": ...}`` from /proc/stat, in ticks."""
    times: dict[str, tuple[int, int]] = {}
    for line in stat.splitlines():
        parts = line.split()
        if not parts or not parts[0].startswith("cpu"):
            continue
        values = [_int(v) for v in parts[1:]]
        if len(values) < 4:
            continue
        # guest times are already counted in user and nice
        total = sum(values[:8])
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        times[parts[0]] = (total - idle, total)
    return times


def parse_meminfo(text: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            values[key.strip()] = _int(parts[0])
    return values


NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errs", "rx_drop")
NET_TX_FIELDS = ("tx_bytes", "tx_packets", "tx_errs", "tx_drop")


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    interfaces: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue
        values = [_int(v) for v in rest.split()]
        if len(values) < 12:
            continue
        stats = dict(zip(NET_FIELDS, values[0:4], strict=True))
        stats.update(zip(NET_TX_FIELDS, values[8:12], strict=True))
        interfaces[name.strip()] = stats
    return interfaces


def parse_cpu_temp(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return round(int(text.strip()) / 1000.0, 2)
    except ValueError:
        return None


# --- the tracker ----------------------------------------------------------------------------


class ProcStatsTracker:
    """Keeps the previous sample to compute rates, and the last :data:`HISTORY` samples."""

    def __init__(self, clk_tck: int | None = None, history: int = HISTORY) -> None:
        self._clk_tck = clk_tck or os.sysconf("SC_CLK_TCK")
        self._samples: collections.deque[dict[str, Any]] = collections.deque(maxlen=history)
        self._last_monotonic: float | None = None
        self._last_ticks = 0
        self._last_cpu: dict[str, tuple[int, int]] = {}
        self._last_net: dict[str, dict[str, int]] = {}
        self._latest: dict[str, Any] = {}

    def sample(
        self, src: Sources, *, now: float, monotonic: float, websocket_connections: int
    ) -> dict[str, Any]:
        """Take one sample; return the ``notify_proc_stat_update`` payload."""
        elapsed = None if self._last_monotonic is None else monotonic - self._last_monotonic
        ticks = parse_process_ticks(src.proc_self_stat)
        cpu_usage = 0.0
        if elapsed and elapsed > 0:
            cpu_usage = round((ticks - self._last_ticks) / self._clk_tck / elapsed * 100, 2)
        process = {
            "time": now,
            "cpu_usage": max(cpu_usage, 0.0),
            "memory": parse_rss_kb(src.proc_self_status),
            "mem_units": "kB",
        }
        cpu_times = parse_cpu_times(src.proc_stat)
        system_cpu: dict[str, float] = {}
        for name, (busy, total) in cpu_times.items():
            prev_busy, prev_total = self._last_cpu.get(name, (busy, total))
            span = total - prev_total
            system_cpu[name] = round((busy - prev_busy) / span * 100, 2) if span > 0 else 0.0
        network: dict[str, dict[str, Any]] = {}
        for name, stats in parse_net_dev(src.proc_net_dev).items():
            bandwidth = 0.0
            prev = self._last_net.get(name)
            if prev is not None and elapsed and elapsed > 0:
                moved = (stats["rx_bytes"] + stats["tx_bytes"]) - (
                    prev["rx_bytes"] + prev["tx_bytes"]
                )
                bandwidth = round(max(moved, 0) / elapsed, 2)
            network[name] = {
                "rx_bytes": stats["rx_bytes"],
                "tx_bytes": stats["tx_bytes"],
                "rx_packets": stats["rx_packets"],
                "tx_packets": stats["tx_packets"],
                "rx_errs": stats["rx_errs"],
                "tx_errs": stats["tx_errs"],
                "rx_drop": stats["rx_drop"],
                "tx_drop": stats["tx_drop"],
                "bandwidth": bandwidth,
            }
            self._last_net[name] = stats
        mem = parse_meminfo(src.proc_meminfo)
        total = mem.get("MemTotal", 0)
        available = mem.get("MemAvailable", mem.get("MemFree", 0))
        self._last_monotonic = monotonic
        self._last_ticks = ticks
        self._last_cpu = cpu_times
        self._samples.append(process)
        self._latest = {
            "cpu_temp": parse_cpu_temp(src.cpu_temp),
            "network": network,
            "system_cpu_usage": system_cpu,
            "system_memory": {"total": total, "available": available, "used": total - available},
        }
        return {
            "moonraker_stats": process,
            **self._latest,
            "websocket_connections": websocket_connections,
        }

    def proc_stats(self, *, system_uptime: float, websocket_connections: int) -> dict[str, Any]:
        """The ``machine.proc_stats`` result."""
        latest = self._latest or {
            "cpu_temp": None,
            "network": {},
            "system_cpu_usage": {},
            "system_memory": {"total": 0, "available": 0, "used": 0},
        }
        return {
            "moonraker_stats": list(self._samples),
            "throttled_state": None,
            **latest,
            "system_uptime": system_uptime,
            "websocket_connections": websocket_connections,
        }


# --- system info ----------------------------------------------------------------------------


def parse_os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first value of each key (x86 repeats them per core; ARM adds Hardware/Model)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values.setdefault(key.strip(), value.strip())
    return values


def system_info(
    *,
    python_version: tuple[Any, ...],
    python_version_string: str,
    cpuinfo: str,
    meminfo: str,
    os_release: str,
    kernel_version: str,
    machine: str,
    bits: str,
    cpu_count: int,
    interfaces: dict[str, dict[str, Any]],
    virt: tuple[str, str] = ("none", "none"),
    instance_name: str = "trioprint",
) -> dict[str, Any]:
    """The ``machine.system_info`` result."""
    cpu = parse_cpuinfo(cpuinfo)
    osr = parse_os_release(os_release)
    version = osr.get("VERSION_ID", "")
    major, _, rest = version.partition(".")
    minor, _, build = rest.partition(".")
    return {
        "system_info": {
            "python": {
                "version": list(python_version),
                "version_string": python_version_string,
            },
            "cpu_info": {
                "cpu_count": cpu_count,
                "bits": bits,
                "processor": machine,
                "cpu_desc": cpu.get("model name", cpu.get("Processor", "")),
                "serial_number": cpu.get("Serial", ""),
                "hardware_desc": cpu.get("Hardware", ""),
                "model": cpu.get("Model", ""),
                "total_memory": parse_meminfo(meminfo).get("MemTotal", 0),
                "memory_units": "kB",
            },
            "sd_info": {},
            "distribution": {
                "name": osr.get("PRETTY_NAME", osr.get("NAME", "")),
                "id": osr.get("ID", ""),
                "version": version,
                "version_parts": {"major": major, "minor": minor, "build_number": build},
                "like": osr.get("ID_LIKE", ""),
                "codename": osr.get("VERSION_CODENAME", ""),
                "release_info": {},
                "kernel_version": kernel_version,
            },
            "virtualization": {"virt_type": virt[0], "virt_identifier": virt[1]},
            "network": interfaces,
            "canbus": {},
            "provider": "none",
            "available_services": [],
            "service_state": {},
            "instance_ids": {"moonraker": instance_name, "klipper": "klipper"},
        }
    }


def _virtualization() -> tuple[str, str]:
    if os.path.exists("/.dockerenv"):
        return ("container", "docker")
    if os.path.exists("/run/.containerenv"):
        return ("container", "podman")
    cgroup = _read("/proc/1/cgroup")
    for name in ("docker", "lxc", "kubepods"):
        if name in cgroup:
            return ("container", name)
    product = _read("/sys/class/dmi/id/product_name").strip().lower()
    for name in ("kvm", "qemu", "virtualbox", "vmware"):
        if name in product:
            return ("vm", name)
    return ("none", "none")


def _interfaces() -> dict[str, dict[str, Any]]:
    interfaces: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(OSError):
        for _, name in socket.if_nameindex():
            if name == "lo":
                continue
            mac = _read(f"/sys/class/net/{name}/address").strip()
            interfaces[name] = {"mac_address": mac, "ip_addresses": []}
    # IPv6 addresses are listed in /proc/net/if_inet6; IPv4 ones need an ioctl per interface.
    for line in _read("/proc/net/if_inet6").splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[5] not in interfaces:
            continue
        raw = parts[0]
        with contextlib.suppress(ValueError):
            address = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(raw))
            interfaces[parts[5]]["ip_addresses"].append(
                {"family": "ipv6", "address": address, "is_link_local": address.startswith("fe80")}
            )
    for name, info in interfaces.items():
        ipv4 = _ipv4_address(name)
        if ipv4:
            info["ip_addresses"].insert(
                0, {"family": "ipv4", "address": ipv4, "is_link_local": ipv4.startswith("169.254.")}
            )
    return interfaces


def _ipv4_address(name: str) -> str | None:
    try:
        import fcntl
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            packed = struct.pack("256s", name.encode()[:15])
            result = fcntl.ioctl(sock.fileno(), 0x8915, packed)  # SIOCGIFADDR
            return socket.inet_ntoa(result[20:24])
    except OSError:
        return None


def read_system_info(instance_name: str = "trioprint") -> dict[str, Any]:
    """Gather and build the ``machine.system_info`` result (blocking; never raises)."""
    return system_info(
        python_version=tuple(sys.version_info),
        python_version_string=sys.version.replace("\n", " "),
        cpuinfo=_read("/proc/cpuinfo"),
        meminfo=_read("/proc/meminfo"),
        os_release=_read("/etc/os-release"),
        kernel_version=platform.release(),
        machine=platform.machine(),
        bits=platform.architecture()[0],
        cpu_count=os.cpu_count() or 0,
        interfaces=_interfaces(),
        virt=_virtualization(),
        instance_name=instance_name,
    )

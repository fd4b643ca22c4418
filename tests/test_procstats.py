"""/proc parsing and the proc_stats / system_info shapes (pure, no Trio)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from trioprint.domain import procstats
from trioprint.domain.procstats import ProcStatsTracker, Sources

DATA = Path(__file__).parent / "data" / "proc"

SELF_STAT = "1234 (python3 (x) y) S 1 1234 1234 0 -1 4194560 1 0 0 0 {utime} {stime} 0 0 20 0 1"
STATUS = "Name:\tpython3\nVmRSS:\t   51484 kB\nThreads:\t2\n"
STAT = "cpu  {a} 0 {b} {idle} 0 0 0 0 0 0\ncpu0 {a} 0 {b} {idle} 0 0 0 0 0 0\nintr 1 2 3\n"
MEMINFO = "MemTotal:       24684084 kB\nMemFree:        1000 kB\nMemAvailable:   24342612 kB\n"
NET = (
    "Inter-|   Receive                  |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop\n"
    "    lo: {rx}   29    0    0    0     0          0         0 {tx}   29    0    0    0  0  0 0\n"
    "  eth0: 100   2    1    3    0     0          0         0 200   4    5    6    0  0  0 0\n"
)


def sources(utime: int, stime: int, a: int, b: int, idle: int, rx: int, tx: int) -> Sources:
    return Sources(
        proc_self_stat=SELF_STAT.format(utime=utime, stime=stime),
        proc_self_status=STATUS,
        proc_stat=STAT.format(a=a, b=b, idle=idle),
        proc_meminfo=MEMINFO,
        proc_net_dev=NET.format(rx=rx, tx=tx),
        proc_uptime="4661.86 9000.00\n",
        cpu_temp="48250\n",
    )


NOTIFY_KEYS = {
    "moonraker_stats",
    "cpu_temp",
    "network",
    "system_cpu_usage",
    "system_memory",
    "websocket_connections",
}
NET_KEYS = {
    "rx_bytes",
    "tx_bytes",
    "rx_packets",
    "tx_packets",
    "rx_errs",
    "tx_errs",
    "rx_drop",
    "tx_drop",
    "bandwidth",
}


def test_two_samples_give_rates() -> None:
    tracker = ProcStatsTracker(clk_tck=100)
    first = tracker.sample(
        sources(100, 50, 1000, 500, 8500, 1000, 1000),
        now=10.0,
        monotonic=1.0,
        websocket_connections=2,
    )
    assert set(first) == NOTIFY_KEYS
    assert first["moonraker_stats"] == {
        "time": 10.0,
        "cpu_usage": 0.0,
        "memory": 51484,
        "mem_units": "kB",
    }
    assert first["system_cpu_usage"] == {"cpu": 0.0, "cpu0": 0.0}
    assert first["network"]["lo"]["bandwidth"] == 0.0
    # 2 s later: the process used 30 ticks (0.3 s) -> 15 %; the system 100 busy of 400 -> 25 %;
    # lo moved 3000 bytes -> 1500 B/s
    second = tracker.sample(
        sources(120, 60, 1080, 520, 8800, 2000, 3000),
        now=12.0,
        monotonic=3.0,
        websocket_connections=2,
    )
    assert second["moonraker_stats"]["cpu_usage"] == 15.0
    assert second["system_cpu_usage"] == {"cpu": 25.0, "cpu0": 25.0}
    assert second["network"]["lo"] == {
        "rx_bytes": 2000,
        "tx_bytes": 3000,
        "rx_packets": 29,
        "tx_packets": 29,
        "rx_errs": 0,
        "tx_errs": 0,
        "rx_drop": 0,
        "tx_drop": 0,
        "bandwidth": 1500.0,
    }
    assert second["network"]["eth0"]["rx_errs"] == 1
    assert second["network"]["eth0"]["tx_drop"] == 6
    assert second["system_memory"] == {
        "total": 24684084,
        "available": 24342612,
        "used": 24684084 - 24342612,
    }
    assert second["cpu_temp"] == 48.25
    assert second["websocket_connections"] == 2


def test_proc_stats_keeps_the_last_30_samples() -> None:
    tracker = ProcStatsTracker(clk_tck=100)
    for i in range(40):
        tracker.sample(
            sources(i, 0, i, 0, 100 * i, i, i),
            now=float(i),
            monotonic=float(i),
            websocket_connections=0,
        )
    stats = tracker.proc_stats(system_uptime=4661.86, websocket_connections=3)
    assert set(stats) == (NOTIFY_KEYS | {"throttled_state", "system_uptime"})
    assert [s["time"] for s in stats["moonraker_stats"]] == [float(i) for i in range(10, 40)]
    assert stats["throttled_state"] is None
    assert stats["system_uptime"] == 4661.86
    assert stats["websocket_connections"] == 3


def test_proc_stats_before_any_sample_has_the_full_shape() -> None:
    stats = ProcStatsTracker(clk_tck=100).proc_stats(system_uptime=1.0, websocket_connections=0)
    assert stats["moonraker_stats"] == []
    assert set(stats) == (NOTIFY_KEYS | {"throttled_state", "system_uptime"})


def test_system_info_from_a_raspberry_pi() -> None:
    info = procstats.system_info(
        python_version=(3, 11, 2, "final", 0),
        python_version_string="3.11.2",
        cpuinfo=(DATA / "cpuinfo_rpi").read_text(),
        meminfo=MEMINFO,
        os_release=(DATA / "os-release").read_text(),
        kernel_version="6.1.21-v8+",
        machine="aarch64",
        bits="64bit",
        cpu_count=4,
        interfaces={},
    )["system_info"]
    cpu = info["cpu_info"]
    assert cpu["hardware_desc"] == "BCM2835"
    assert cpu["serial_number"] == "100000002a5da2d5"
    assert cpu["model"] == "Raspberry Pi 4 Model B Rev 1.1"
    assert cpu["total_memory"] == 24684084
    assert info["distribution"]["id"] == "debian"
    assert info["distribution"]["version_parts"]["major"] == "12"
    assert info["python"]["version"] == [3, 11, 2, "final", 0]
    assert info["instance_ids"]["moonraker"] == "trioprint"


def test_system_info_from_an_x86_machine() -> None:
    cpuinfo = (DATA / "cpuinfo_x86").read_text()
    info = procstats.system_info(
        python_version=(3, 11, 7, "final", 0),
        python_version_string="3.11.7",
        cpuinfo=cpuinfo,
        meminfo="",
        os_release="",
        kernel_version="6.1",
        machine="x86_64",
        bits="64bit",
        cpu_count=2,
        interfaces={},
    )["system_info"]
    assert info["cpu_info"]["cpu_desc"] == procstats.parse_cpuinfo(cpuinfo)["model name"]
    assert info["cpu_info"]["total_memory"] == 0
    assert info["distribution"]["name"] == ""


SYSTEM_INFO_KEYS = {
    "python",
    "cpu_info",
    "sd_info",
    "distribution",
    "virtualization",
    "network",
    "canbus",
    "provider",
    "available_services",
    "service_state",
    "instance_ids",
}


def test_live_machine_reads() -> None:
    src = procstats.read_sources()
    assert "VmRSS" in src.proc_self_status
    sample = ProcStatsTracker().sample(src, now=1.0, monotonic=1.0, websocket_connections=0)
    assert sample["moonraker_stats"]["memory"] > 0
    assert "cpu" in sample["system_cpu_usage"]
    assert sample["system_memory"]["total"] > 0
    for stats in sample["network"].values():
        assert set(stats) == NET_KEYS
    info = procstats.read_system_info()["system_info"]
    assert set(info) == SYSTEM_INFO_KEYS
    for iface in info["network"].values():
        assert set(iface) == {"mac_address", "ip_addresses"}


def test_garbage_lines_are_skipped() -> None:
    assert procstats.parse_process_ticks("no parens here") == 0
    assert procstats.parse_process_ticks("1 (a) S 1 2") == 0
    assert procstats.parse_rss_kb("VmRSS:") == 0
    assert procstats.parse_cpu_times("cpu x y\ncpu1 1 2 3 4\n") == {"cpu1": (6, 10)}
    assert procstats.parse_net_dev("lo: 1 2 3\n") == {}
    assert procstats.parse_uptime("") == 0.0
    assert procstats.parse_cpu_temp("warm") is None


@given(
    st.builds(
        Sources,
        proc_self_stat=st.text(),
        proc_self_status=st.text(),
        proc_stat=st.text(),
        proc_meminfo=st.text(),
        proc_net_dev=st.text(),
        proc_uptime=st.text(),
        cpu_temp=st.none() | st.text(),
    ),
    st.builds(Sources, proc_stat=st.text(), proc_net_dev=st.text()),
)
def test_arbitrary_text_never_raises_and_keeps_the_shape(first: Sources, second: Sources) -> None:
    tracker = ProcStatsTracker(clk_tck=100)
    for i, src in enumerate((first, second)):
        sample = tracker.sample(src, now=float(i), monotonic=float(i), websocket_connections=0)
        assert set(sample) == NOTIFY_KEYS
        assert set(sample["moonraker_stats"]) == {"time", "cpu_usage", "memory", "mem_units"}
        for stats in sample["network"].values():
            assert set(stats) == NET_KEYS
    procstats.parse_uptime(first.proc_uptime)

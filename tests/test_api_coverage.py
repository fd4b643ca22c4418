"""docs/api-coverage.md stays true: it is checked against the endpoint registry."""

from __future__ import annotations

import re
from pathlib import Path

import trio

from trioprint.app import Instance
from trioprint.config import load_config
from trioprint.registry import Transport

TABLE = Path(__file__).resolve().parent.parent / "docs" / "api-coverage.md"


def served_rows() -> set[tuple[str | None, str | None]]:
    rows = set()
    for line in TABLE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[2] != "yes":
            continue
        rpc = re.fullmatch(r"`([^`]+)`", cells[0])
        name = rpc.group(1) if rpc else None
        # `GET, POST /path`: one endpoint served with several verbs under one name
        http = re.fullmatch(r"`([A-Z]+(?:, [A-Z]+)*) (/[^`]*)`", cells[1])
        if http is None:
            rows.add((name, None))
            continue
        for verb in http.group(1).split(", "):
            rows.add((name, f"{verb} {http.group(2)}"))
    return rows


def registered_rows(tmp_path: Path) -> set[tuple[str | None, str | None]]:
    # the update manager's, MQTT's, the power devices' and WLED's endpoints only with their
    # sections
    conf = tmp_path / "trioprint.conf"
    # (and the sensors', the notifiers' and Spoolman's only with theirs)
    conf.write_text(
        "[update_manager]\n[sensor s]\ntype: mqtt\n"
        "[notifier n]\nurl: json://127.0.0.1:9/\nevents: *\n"
        "[spoolman]\nserver: http://127.0.0.1:9\n[mqtt]\naddress: 127.0.0.1\n"
        "[power psu]\ntype: gpio\npin: gpio1\n[wled w]\naddress: 127.0.0.1\n"
    )
    instance = Instance(load_config(conf, tmp_path))
    rows = set()
    for ep in instance.registry.endpoints():
        http = f"{ep.verb} {ep.path}" if ep.transports & Transport.HTTP else None
        rows.add((ep.rpc_name, http))
    return rows


async def test_coverage_table_matches_the_registry(tmp_path: Path) -> None:
    await trio.lowlevel.checkpoint()  # Instance needs a running Trio loop
    table = served_rows()
    registered = registered_rows(tmp_path)
    assert table, "no served rows found in the table"
    assert table - registered == set(), "marked served in the docs but not registered"
    assert registered - table == set(), "registered but not marked served in the docs"

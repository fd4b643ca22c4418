"""server.files.get_directory with extended=true: each G-code file's cached metadata merged
into its entry, as Moonraker does."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
import trio

from tests.test_files import INFO_KEYS, Env, make_env, write
from trioprint.components.metadata import MetadataStore
from trioprint.domain.kv import MemoryStore

from .test_sim import WAIT, sim_server

CORPUS = Path(__file__).parent / "data" / "metadata"


@pytest.fixture
def env(tmp_path: Path) -> tuple[Env, MetadataStore]:
    e = make_env(tmp_path)
    store = MetadataStore(e.files, e.bus, e.ws, tmp_path, MemoryStore())
    e.files.metadata_lookup = store.cached
    return e, store


def by_name(listing: dict[str, object]) -> dict[str, dict[str, object]]:
    files = listing["files"]
    assert isinstance(files, list)
    return {f["filename"]: f for f in files}


async def test_extended_merges_cached_metadata(env: tuple[Env, MetadataStore]) -> None:
    e, store = env
    (e.gcodes / "sub").mkdir(parents=True)
    shutil.copy(CORPUS / "prusaslicer.gcode", e.gcodes / "sub" / "cube.gcode")
    shutil.copy(CORPUS / "cura.gcode", e.gcodes / "sub" / "never_scanned.gcode")
    write(e.gcodes / "sub" / "notes.txt", "slicer: none")
    meta = await store.get("sub/cube.gcode")
    assert meta["slicer"] == "PrusaSlicer"

    plain = by_name(await e.call("server.files.get_directory", path="gcodes/sub"))
    assert set(plain["cube.gcode"]) == {"filename", *INFO_KEYS}

    listing = await e.call("server.files.get_directory", path="gcodes/sub", extended=True)
    files = by_name(listing)
    cube = files["cube.gcode"]
    # the entry keeps its own name (Moonraker's metadata has the gcodes-relative one)
    assert cube["filename"] == "cube.gcode"
    assert cube["permissions"] == "rw"
    for key in ("slicer", "layer_height", "estimated_time", "thumbnails", "uuid"):
        assert cube[key] == meta[key], key
    assert cube["size"] == meta["size"] == (e.gcodes / "sub" / "cube.gcode").stat().st_size
    # nothing is extracted for a listing, and only G-code files get metadata
    assert set(files["never_scanned.gcode"]) == {"filename", *INFO_KEYS}
    assert set(files["notes.txt"]) == {"filename", *INFO_KEYS}


async def test_extended_skips_stale_metadata_and_other_roots(
    env: tuple[Env, MetadataStore],
) -> None:
    e, store = env
    e.gcodes.mkdir()
    gcode = e.gcodes / "a.gcode"
    shutil.copy(CORPUS / "prusaslicer.gcode", gcode)
    await store.get("a.gcode")
    gcode.write_bytes(gcode.read_bytes() + b"G1 X1\n")  # changed since: the cache no longer fits
    files = by_name(await e.call("server.files.get_directory", path="gcodes", extended=True))
    assert set(files["a.gcode"]) == {"filename", *INFO_KEYS}
    # config has no metadata to merge
    write(e.data / "config" / "a.gcode")
    config = by_name(await e.call("server.files.get_directory", path="config", extended=True))
    assert set(config["a.gcode"]) == {"filename", *INFO_KEYS}


async def test_extended_over_http(tmp_path: Path) -> None:
    shutil.copy(CORPUS / "orcaslicer.gcode", tmp_path / "orca.gcode")
    async with sim_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
        os.replace(tmp_path / "orca.gcode", tmp_path / "gcodes" / "orca.gcode")
        with trio.fail_after(WAIT):
            meta = (await http.get("/server/files/metadata?filename=orca.gcode")).json()
            listing = (
                await http.get(
                    "/server/files/directory", params={"path": "gcodes", "extended": "true"}
                )
            ).json()
    files = by_name(listing["result"])
    assert files["orca.gcode"]["slicer"] == meta["result"]["slicer"] == "OrcaSlicer"
    assert files["orca.gcode"]["filename"] == "orca.gcode"

"""``server.webcams.*``: the cameras frontends show (Moonraker 0.11's ``webcam`` component).

Cameras come from ``[webcam NAME]`` sections (read-only through the API) and from the
database, namespace ``webcams``, one record per camera under its uid (what
``server.webcams.post_item`` adds). Every change is announced with ``notify_webcams_changed``
and the whole list. The fields and their checks are pure (:mod:`trioprint.domain.webcams`).

A configured camera's uid derives from the instance's UUID, kept in ``<data>/.moonraker.uuid``
as Moonraker keeps it (created on first start), so it is the same after a restart.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from ..domain.kv import KeyValueStore
from ..domain.webcams import (
    Cameras,
    Webcam,
    WebcamError,
    default_host,
    from_section,
    full_url,
)
from ..errors import ApiError
from ..registry import Call, NoParams, endpoint
from ..transport.http_client import HttpError, HttpResponse, http_get

log = logging.getLogger(__name__)

NAMESPACE = "webcams"
UUID_FILE = ".moonraker.uuid"
#: Seconds ``server.webcams.test`` waits for a snapshot.
TEST_TIMEOUT = 1.0

Fetch = Callable[..., Awaitable[HttpResponse]]


class Broadcaster(Protocol):
    def broadcast(self, method: str, params: list[Any] | None = None) -> None: ...


@attrs.frozen
class ItemParams:
    """``name`` or ``uid`` names a camera; the other arguments are its fields."""

    args: Mapping[str, Any]

    @classmethod
    def from_args(cls, raw: Mapping[str, Any]) -> ItemParams:
        return cls(dict(raw))


def read_instance_uuid(data_dir: Path) -> str:
    """The instance's UUID from ``<data>/.moonraker.uuid``, written there if absent or bad."""
    path = data_dir / UUID_FILE
    try:
        text = path.read_text().strip()
        uuid.UUID(text)
        return text
    except (OSError, ValueError):
        pass
    text = uuid.uuid4().hex
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        log.warning("webcams: cannot keep the instance UUID in %s: %s", path, exc)
    return text


class Webcams:
    """Moonraker's ``webcam`` component."""

    name = "webcam"

    def __init__(
        self,
        sections: Mapping[str, Mapping[str, str]],
        database: KeyValueStore,
        websockets: Broadcaster,
        data_dir: Path,
        *,
        fetch: Fetch = http_get,
        warnings: list[str] | None = None,
        public_ip: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._sections = dict(sections)
        self._db = database
        self._websockets = websockets
        self._data_dir = data_dir
        self._fetch = fetch
        self._warnings = warnings if warnings is not None else []
        self._public_ip = public_ip
        self.cameras = Cameras()
        self._lock = trio.Lock()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        instance_uuid = await trio.to_thread.run_sync(read_instance_uuid, self._data_dir)
        configured: list[Webcam] = []
        for name, options in self._sections.items():
            try:
                configured.append(from_section(name, options, instance_uuid))
            except WebcamError as exc:
                self._warnings.append(f"[webcam {name}]: {exc}; ignored")
        self.cameras = Cameras(configured)
        records = await self._db.get_item(NAMESPACE, None, default={})
        for problem in self.cameras.load(records if isinstance(records, dict) else {}):
            log.warning("%s", problem)
        task_status.started()

    # -- the endpoints -----------------------------------------------------------------------

    @endpoint("/server/webcams/list", "GET")
    async def list_webcams(self, call: Call[NoParams]) -> dict[str, Any]:
        return {"webcams": self.cameras.listed()}

    def _lookup(self, args: Mapping[str, Any], *, required: bool = True) -> Webcam | None:
        if "uid" in args:
            uid = args["uid"]
            cam = self.cameras.by_uid(uid) if isinstance(uid, str) else None
            if cam is None:
                raise ApiError(f"Webcam with UID {uid} not found", 404)
            return cam
        name = args.get("name")
        if name is None:
            raise ApiError("No data for argument: name", 400)
        if not isinstance(name, str):
            raise ApiError(f"Invalid value for 'name': expected a string, got {name!r}", 400)
        cam = self.cameras.by_name.get(name)
        if cam is None and required:
            raise ApiError(f"Webcam {name} not found", 404)
        return cam

    def _new_uid(self) -> str:
        taken = self.cameras.uids()
        while (uid := str(uuid.uuid4())) in taken:
            pass
        return uid

    def _changed(self) -> None:
        self._websockets.broadcast("notify_webcams_changed", [{"webcams": self.cameras.listed()}])

    @endpoint("/server/webcams/item", "GET", "POST", "DELETE", params=ItemParams)
    async def item(self, call: Call[ItemParams]) -> dict[str, Any]:
        args = call.params.args
        if call.verb == "GET":
            cam = self._lookup(args)
            assert cam is not None
            return {"webcam": cam.as_dict()}
        async with self._lock:  # one change (and its write) at a time
            try:
                if call.verb == "POST":
                    existing = self._lookup(args, required=False)
                    old_name = existing.name if existing else None
                    cam = self.cameras.post(existing, args, self._new_uid())
                    try:
                        await self._db.insert_item(NAMESPACE, [cam.uid], cam.record())
                    except Exception:  # not stored: not changed either
                        self.cameras.by_name.pop(cam.name, None)
                        if existing is not None and old_name is not None:
                            self.cameras.by_name[old_name] = existing
                        raise
                else:
                    cam = self._lookup(args)
                    assert cam is not None
                    self.cameras.delete(cam)
                    try:
                        await self._db.delete_item(NAMESPACE, [cam.uid])
                    except ApiError as exc:
                        if exc.status != 404:
                            raise
            except WebcamError as exc:
                raise ApiError(str(exc), 400) from None
        self._changed()
        return {"webcam": cam.as_dict()}

    @endpoint("/server/webcams/test", "POST", params=ItemParams)
    async def test(self, call: Call[ItemParams]) -> dict[str, Any]:
        cam = self._lookup(call.params.args)
        assert cam is not None
        host = default_host(self._public_ip())
        result: dict[str, Any] = {"name": cam.name, "snapshot_reachable": False}
        for kind in ("snapshot", "stream"):
            try:
                result[f"{kind}_url"] = full_url(getattr(cam, f"{kind}_url"), host)
            except WebcamError:
                result[f"{kind}_url"] = ""
        url: str = result["snapshot_url"]
        if url.startswith("http"):
            try:
                response = await self._fetch(url, limit=TEST_TIMEOUT)
                result["snapshot_reachable"] = response.status < 400
            except HttpError as exc:
                log.info("webcams: snapshot of %s unreachable: %s", cam.name, exc)
        return result

"""``exclude_object``: the objects a sliced file labels, and which of them to skip.

Slicers mark each object's moves with ``EXCLUDE_OBJECT_START`` / ``_END`` (and describe the
objects with ``EXCLUDE_OBJECT_DEFINE``); ``EXCLUDE_OBJECT NAME=...`` cancels one. While the
current object is excluded its moves are not made, and the extrusion they would have done
becomes an offset between the G-code's extruder position and the toolhead's, so the next
printed move does not extrude it all at once.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from .gcode import GcodeError, GcodeLine


class ExcludeObject:
    def __init__(self, respond_info: Callable[[str], None]) -> None:
        self.respond_info = respond_info
        self.reset()

    def reset(self) -> None:
        self.objects: list[dict[str, Any]] = []
        self.excluded: list[str] = []
        self.current: str | None = None

    @property
    def skipping(self) -> bool:
        """Moves now belong to an excluded object."""
        return self.current is not None and self.current in self.excluded

    def status(self) -> dict[str, Any]:
        return {
            "objects": copy.deepcopy(self.objects),
            "excluded_objects": list(self.excluded),
            "current_object": self.current,
        }

    def _add(self, obj: dict[str, Any]) -> None:
        self.objects = sorted([*self.objects, obj], key=lambda o: str(o["name"]))

    def _exclude(self, name: str) -> None:
        self.respond_info(f"Excluding object {name}")
        if name not in self.excluded:
            self.excluded = sorted([*self.excluded, name])

    def DEFINE(self, line: GcodeLine) -> None:
        if line.get("RESET", None):
            self.reset()
            return
        name = line.get("NAME", "").upper()
        if not name:
            if line.get("JSON", None) is not None:
                listing = json.dumps(self.objects)
            else:
                listing = " ".join(obj["name"] for obj in self.objects)
            self.respond_info(f"Known objects: {listing}")
            return
        obj: dict[str, Any] = {"name": name}
        obj.update({k: v for k, v in line.params.items() if k not in ("NAME", "CENTER", "POLYGON")})
        try:
            if "CENTER" in line.params:
                obj["center"] = json.loads(f"[{line.params['CENTER']}]")
            if "POLYGON" in line.params:
                obj["polygon"] = json.loads(line.params["POLYGON"])
        except (ValueError, RecursionError):
            raise GcodeError(f"Malformed command '{line.raw}'") from None
        self._add(obj)

    def START(self, line: GcodeLine) -> None:
        name = line.get("NAME").upper()
        if not any(obj["name"] == name for obj in self.objects):
            self._add({"name": name})
        self.current = name

    def END(self, line: GcodeLine) -> None:
        if self.current is None:
            self.respond_info("EXCLUDE_OBJECT_END called, but no object is currently active")
            return
        name = line.get("NAME", None)
        if name is not None and name.upper() != self.current:
            self.respond_info(
                f"EXCLUDE_OBJECT_END NAME={name.upper()} does not match the current object "
                f"NAME={self.current}"
            )
        self.current = None

    def EXCLUDE(self, line: GcodeLine) -> None:
        name = line.get("NAME", "").upper()
        if line.get("RESET", None):
            if name:
                self.respond_info(f"Unexcluding object {name}")
                self.excluded = [n for n in self.excluded if n != name]
            else:
                self.excluded = []
        elif name:
            self._exclude(name)
        elif line.get("CURRENT", None):
            if self.current is None:
                raise GcodeError("There is no current object to cancel")
            self._exclude(self.current)
        else:
            self.respond_info(f"Excluded objects: {' '.join(self.excluded)}")

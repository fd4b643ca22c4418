"""``POST /server/files/upload``: a multipart upload streamed to disk, safe at every step.

The body is parsed as it arrives by werkzeug's sans-I/O multipart decoder (werkzeug comes with
Quart), so memory stays flat whatever the file's size. The file part goes to a hidden
temporary file (written in worker threads) while its sha256 is computed; only when the body is
complete, the form's ``root``/``path`` are known and ``checksum`` (if given) matches is it
renamed into place, atomically. A cancelled, failed or refused upload removes its temporary
file: no partial file is ever visible under the target name. The temporary files are never
listed or served, and the ones a killed server left are deleted at start-up
(:func:`remove_leftovers`).

Nothing waits without bound: a body that sends no data for :data:`UPLOAD_IDLE_TIMEOUT` seconds
is answered 408, and a body whose boundary is not found within ``MAX_FIELDS_SIZE`` bytes (a
wrong boundary) is answered 400 at once, without waiting for the rest of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any

import attrs
import trio
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    State,
)

from ..domain.events import Event
from ..domain.paths import is_temporary, upload_temp_name
from ..errors import ApiError
from .files.manager import Files
from .files.roots import GCODE_EXTENSIONS

log = logging.getLogger(__name__)

#: Bytes of form fields (everything but the file) an upload may carry.
MAX_FIELDS_SIZE = 64 * 1024
FIELDS = ("root", "path", "print", "checksum")
#: Bytes given to the multipart decoder at a time (well under ``MAX_FIELDS_SIZE``).
FEED_SIZE = 16 * 1024
#: Seconds an upload's body may send nothing before it is refused (408).
UPLOAD_IDLE_TIMEOUT = 30.0


def create_temporary(folder: str) -> tuple[int, str]:  # thread
    """A new, empty upload temporary file in ``folder``: its descriptor and path.

    Created with mode 0666 less the umask, as any file a program writes (``mkstemp``'s 0600
    would stay on the uploaded file after its rename).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    while True:
        path = os.path.join(folder, upload_temp_name(secrets.token_hex(8)))
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue


def remove_leftovers(root: str) -> list[str]:  # thread
    """Delete the temporary files that a killed server left under ``root`` (only trioprint's
    own names, only regular files, symlinked folders not followed); the paths removed."""
    removed: list[str] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            if not is_temporary(name):
                continue
            full = os.path.join(folder, name)
            try:
                if os.path.isfile(full) and not os.path.islink(full):
                    os.unlink(full)
                    removed.append(full)
            except OSError as exc:
                log.warning("file_manager: cannot remove %s: %s", full, exc.strerror or exc)
    return removed


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


class Upload:
    """One upload in progress: the form fields and the spooled file."""

    def __init__(self, spool_dir: str, accepted: tuple[str, ...] = FIELDS) -> None:
        self.accepted = accepted  # the form fields kept (others are read and dropped)
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.size = 0
        self.sha256 = hashlib.sha256()
        fd, self.tmp_path = create_temporary(spool_dir)
        self.file: IO[bytes] | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:  # thread
        assert self.file is not None
        self.file.write(data)

    def close(self) -> None:  # thread
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self.file = None

    def discard(self) -> None:  # thread
        with contextlib.suppress(OSError):
            if self.file is not None:
                self.file.close()
                self.file = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)


async def receive(
    upload: Upload,
    body: AsyncIterator[bytes],
    boundary: bytes,
    *,
    idle_timeout: float = UPLOAD_IDLE_TIMEOUT,
) -> None:
    """Feed ``body`` through the multipart decoder into ``upload`` until the epilogue.

    A chunk may be large (the server hands over all that has arrived since the last one), so
    it is fed to the decoder in slices of :data:`FEED_SIZE`, each decoded before the next: the
    decoder refuses to hold more than ``max_form_memory_size`` at once. The file data of one
    chunk is written in one go. A body that sends nothing for ``idle_timeout`` seconds is
    refused (408).
    """
    decoder = MultipartDecoder(boundary, max_form_memory_size=MAX_FIELDS_SIZE)
    field: str | None = None
    value = bytearray()
    in_file = False
    done = False
    chunks = body.__aiter__()
    while not done:
        chunk: bytes | None = None
        with trio.move_on_after(idle_timeout) as waiting:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                chunk = None  # the end of the body: the decoder finishes what it holds
        if waiting.cancelled_caught:
            raise ApiError(f"upload timed out: no data for {idle_timeout:g} s", 408)
        slices: list[bytes | None] = (
            [None]
            if chunk is None
            else [chunk[i : i + FEED_SIZE] for i in range(0, len(chunk), FEED_SIZE)]
        )
        data = bytearray()
        for piece in slices:
            try:
                decoder.receive_data(piece)
                events = []
                while not isinstance(event := decoder.next_event(), NeedData):
                    events.append(event)
                    if isinstance(event, Epilogue):
                        break
            except ValueError as exc:
                raise ApiError(f"malformed multipart upload: {exc}") from None
            except RequestEntityTooLarge:  # what the decoder holds without finding its end
                if decoder.state is State.PREAMBLE:
                    message = f"boundary {boundary.decode('latin-1')!r} not found"
                else:
                    message = "part headers too large"
                raise ApiError(
                    f"malformed multipart upload: {message} in {MAX_FIELDS_SIZE} bytes"
                ) from None
            if piece is None and not any(isinstance(e, Epilogue) for e in events):
                raise ApiError("upload incomplete: the body ended before the multipart epilogue")
            for event in events:
                if isinstance(event, File):
                    if upload.filename is not None:
                        raise ApiError("an upload carries one file (form field 'file')")
                    upload.filename, in_file = event.filename or "", True
                elif isinstance(event, Field):
                    field, in_file = event.name, False
                    value.clear()
                elif isinstance(event, Data):
                    if in_file:
                        data += event.data
                    elif field is not None:
                        value += event.data
                        if len(value) > MAX_FIELDS_SIZE:
                            raise ApiError(f"form field {field!r} is too large", 413)
                        if not event.more_data:
                            if field in upload.accepted:
                                upload.fields[field] = value.decode("utf-8", "replace")
                            field = None
                elif isinstance(event, Epilogue):
                    done = True
            if done:
                break
        if data:
            upload.size += len(data)
            upload.sha256.update(data)
            await trio.to_thread.run_sync(upload.write, bytes(data))
    if upload.filename is None:
        raise ApiError("missing file: the upload has no 'file' part")


@attrs.frozen
class StoredUpload:
    """An upload in place: Moonraker's result (``item``, ``action``), where the file went
    and the form fields that were kept."""

    result: dict[str, Any]
    root: str
    relative: str
    fields: dict[str, str]


async def store_upload(
    files: Files,
    body: AsyncIterator[bytes],
    content_type: str,
    *,
    accepted: tuple[str, ...] = FIELDS,
) -> StoredUpload:
    """Receive a multipart upload, check it and rename it into place (``root``, ``path`` and
    ``checksum`` as Moonraker reads them, from the fields in ``accepted``)."""
    boundary = _boundary(content_type)
    roots = await files.roots()
    if "gcodes" not in roots:
        raise ApiError("no gcodes folder to receive uploads", 500)
    upload = await trio.to_thread.run_sync(Upload, roots["gcodes"].real, accepted)
    try:
        await receive(upload, body, boundary)
        await trio.to_thread.run_sync(upload.close)
        checksum = upload.fields.get("checksum", "").strip().lower()
        if checksum and checksum != upload.sha256.hexdigest():
            raise ApiError(
                f"checksum mismatch: the upload's sha256 is {upload.sha256.hexdigest()}, "
                f"not {checksum}",
                422,
            )
        root = upload.fields.get("root", "gcodes").strip() or "gcodes"
        folder = upload.fields.get("path", "").strip().strip("/")
        name = os.path.basename((upload.filename or "").replace("\\", "/"))
        if not name:
            raise ApiError("invalid file name: the upload's file part has no name")
        relative = f"{folder}/{name}" if folder else name
        if root == "gcodes" and os.path.splitext(name)[1].lower() not in GCODE_EXTENSIONS:
            raise ApiError(f"invalid file extension for the gcodes root: {name!r}")
        result = await files.place_upload(root, relative, upload.tmp_path)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(upload.discard)
        raise
    return StoredUpload(result, root, relative, dict(upload.fields))


@attrs.frozen
class FileUploaded(Event):
    """A file came in through an upload endpoint (after its :class:`~.files.FileChanged`):
    what the uploader asked for and what it gets (OctoPrint's ``Upload`` event)."""

    root: str
    path: str
    select: bool = False
    print: bool = False
    effective_select: bool = False
    effective_print: bool = False


async def handle_upload(
    files: Files,
    body: AsyncIterator[bytes],
    content_type: str,
    start_print: Callable[[str], Awaitable[Any]] | None = None,
    can_print: Callable[[], bool] = lambda: True,
    queue_job: Callable[[str], Awaitable[Any]] | None = None,
) -> dict[str, Any]:
    """Receive an upload and put it in place; Moonraker's result (the caller answers 201).

    With ``print=true`` the print is started if ``can_print()`` says the printer is idle;
    if it is not started and ``queue_job`` is given (``[file_manager] queue_gcode_uploads``),
    the file goes to the job queue instead, as Moonraker does."""
    stored = await store_upload(files, body, content_type)
    result = stored.result
    started = False
    want_print = stored.root == "gcodes" and _truthy(stored.fields.get("print", "false"))
    will_print = want_print and start_print is not None and can_print()
    # announced before the print starts, so that the print's events come after it
    files.publish(
        FileUploaded(stored.root, stored.relative, want_print, want_print, will_print, will_print)
    )
    if will_print and start_print is not None:
        try:
            await start_print(stored.relative)
            started = True
        except ApiError:
            started = False
    queued = False
    if want_print and not started and queue_job is not None:
        await queue_job(stored.relative)
        queued = True
    result.update({"print_started": started, "print_queued": queued})
    return result


def _boundary(content_type: str) -> bytes:
    kind, _, rest = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise ApiError("an upload must be multipart/form-data", 415)
    for param in rest.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    raise ApiError("multipart/form-data without a boundary")


def move_into_place(tmp_path: str, final: str) -> None:  # thread
    """Rename the spooled file to ``final`` atomically (copying first across file systems)."""
    try:
        os.replace(tmp_path, final)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: another file system
            raise
        fd, staged = create_temporary(os.path.dirname(final))
        os.close(fd)
        try:
            shutil.copyfile(tmp_path, staged)
            os.replace(staged, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(staged)
            raise
        os.unlink(tmp_path)

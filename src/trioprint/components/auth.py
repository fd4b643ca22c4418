"""Moonraker's ``authorization`` component: the API key, users and logins, oneshot tokens and
the check every transport makes before it serves a request.

Everything it keeps (the API key, the JWT signing secret, the users with their password hashes
and session key ids) is persisted through ``instance.database`` in the ``authorization``
namespace, loaded in :meth:`Authorization.run` before the component reports it started. The
token, password and address logic is the pure core in ``domain/auth.py``; password hashing
(scrypt, tens of milliseconds) and host name resolution run in worker threads.
"""

from __future__ import annotations

import base64
import logging
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..bus import Bus, Notify
from ..config import AuthorizationConfig
from ..domain import auth as core
from ..domain.auth import (
    API_USER,
    RESERVED_USERS,
    TRUSTED_USER,
    Credentials,
    PasswordHash,
    TokenError,
    TrustedClients,
    User,
)
from ..domain.kv import KeyValueStore
from ..errors import ApiError
from ..registry import Call, NoParams, endpoint

if TYPE_CHECKING:
    from ..transport.websocket import WebsocketManager

log = logging.getLogger(__name__)

NAMESPACE = "authorization"
ISSUER = "trioprint"
#: Seconds a host name in ``trusted_clients`` may take to resolve at start-up.
RESOLVE_TIMEOUT = 5.0


@attrs.define
class UserRecord:
    username: str
    source: str
    created_on: float
    password: PasswordHash | None
    #: The id of the user's current session key: tokens name it, a logout drops it.
    jwk_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "source": self.source,
            "created_on": self.created_on,
            "password": None if self.password is None else self.password.to_json(),
            "jwk_id": self.jwk_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserRecord:
        password = data.get("password")
        return cls(
            username=str(data["username"]),
            source=str(data.get("source", "moonraker")),
            created_on=float(data.get("created_on", 0.0)),
            password=None if password is None else PasswordHash.from_json(password),
            jwk_id=data.get("jwk_id"),
        )

    def user(self) -> User:
        return User(self.username, self.source, self.created_on)


@attrs.frozen
class LoginParams:
    username: str
    password: str
    source: str | None = None


@attrs.frozen
class UserParams:
    username: str | None = None
    password: str | None = None
    source: str | None = None


def _required(value: str | None, name: str) -> str:
    if value is None:
        raise ApiError(f"missing required argument '{name}'")
    return value


@attrs.frozen
class RefreshParams:
    refresh_token: str


@attrs.frozen
class PasswordParams:
    password: str
    new_password: str


def _resolve(hostname: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        log.warning("[authorization] trusted_clients: cannot resolve %s: %s", hostname, exc)
        return []
    return sorted({str(info[4][0]) for info in infos})


class Authorization:
    """Authentication for every transport, and the ``access.*`` endpoints."""

    name = "authorization"

    def __init__(
        self,
        config: AuthorizationConfig,
        database: KeyValueStore,
        bus: Bus,
        websockets: WebsocketManager | None = None,
        *,
        clock: Callable[[], float] = time.time,
        resolve: Callable[[str], Iterable[str]] = _resolve,
        hash_params: dict[str, int] | None = None,
    ) -> None:
        self.config = config
        self._db = database
        self._bus = bus
        self._websockets = websockets
        self._clock = clock
        self._resolve = resolve
        self._hash_params = hash_params or {}
        self.trusted = TrustedClients.parse(
            config.trusted_clients, trust_loopback=config.trust_loopback
        )
        self.oneshots = core.OneshotTokens()
        self.api_key = ""
        self._api_key_created = 0.0
        self._secret = b""
        self.users: dict[str, UserRecord] = {}
        self.failed_logins: dict[str, int] = {}

    # -- start-up --

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.load()
        if self.trusted.hostnames:
            resolved: dict[str, list[str]] = {}
            with trio.move_on_after(RESOLVE_TIMEOUT):
                for name in self.trusted.hostnames:
                    resolved[name] = list(
                        await trio.to_thread.run_sync(self._resolve, name, abandon_on_cancel=True)
                    )
            self.trusted = self.trusted.with_resolved(resolved)
            log.info("trusted host names resolved: %s", resolved)
        task_status.started()

    async def load(self) -> None:
        """Read the key, secret and users; create the key and the secret on first start."""
        stored = await self._db.get_item(NAMESPACE, None, default={})
        if not isinstance(stored, dict):
            stored = {}
        api_key = stored.get("api_key")
        if not isinstance(api_key, dict) or not isinstance(api_key.get("key"), str):
            api_key = {"key": secrets.token_hex(16), "created_on": self._clock()}
            await self._db.insert_item(NAMESPACE, "api_key", api_key)
            log.info("generated a new API key")
        self.api_key, self._api_key_created = api_key["key"], float(api_key.get("created_on", 0))
        secret = stored.get("jwt_secret")
        if not isinstance(secret, str) or not secret:
            secret = secrets.token_hex(32)
            await self._db.insert_item(NAMESPACE, "jwt_secret", secret)
        self._secret = bytes.fromhex(secret)
        self.users = {}
        for name, data in (stored.get("users") or {}).items():
            try:
                self.users[name] = UserRecord.from_json(data)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring a stored user %r that cannot be read: %s", name, exc)

    async def _save_user(self, record: UserRecord) -> None:
        await self._db.insert_item(NAMESPACE, ["users", record.username], record.to_json())

    # -- what the transports call --

    @property
    def logins_forced(self) -> bool:
        return self.config.force_logins and bool(self.users)

    def authenticate(self, creds: Credentials, *, required: bool = True) -> User | None:
        """The user a request is from, in Moonraker's order: a JWT, a oneshot token, the API
        key, a trusted address (not with ``force_logins`` once a user exists). Bad
        credentials and no credentials are an ``ApiError(401)`` when ``required``."""
        try:
            return self._authenticate(creds)
        except ApiError:
            if required:
                raise
            return None

    def _authenticate(self, creds: Credentials) -> User:
        if creds.access_token is not None:
            return self.validate_jwt(creds.access_token)
        if creds.oneshot is not None:
            user = self.oneshots.redeem(creds.oneshot, creds.address, self._clock())
            if user is not None:
                return user
        if creds.api_key is not None:
            return self.validate_api_key(creds.api_key)
        if self.logins_forced:
            raise ApiError("Unauthorized, Force Logins Enabled", 401)
        if self.trusted.trusts(creds.address):
            return User(TRUSTED_USER)
        raise ApiError("Unauthorized", 401)

    def validate_jwt(self, token: str, token_type: str = "access") -> User:
        try:
            claims = core.decode_jwt(
                self._secret, token, now=self._clock(), issuer=ISSUER, token_type=token_type
            )
        except TokenError as exc:
            raise ApiError(f"Invalid token: {exc}", 401) from None
        record = self.users.get(claims.username)
        if record is None or record.jwk_id is None:
            raise ApiError("Invalid token: user not logged in", 401)
        if not core.same_secret(claims.kid, record.jwk_id):
            raise ApiError("Invalid token: revoked", 401)
        return record.user()

    def validate_api_key(self, key: str) -> User:
        if not self.config.enable_api_key:
            raise ApiError("API Key authentication is disabled", 401)
        if core.same_secret(key, self.api_key):
            return User(API_USER, created_on=self._api_key_created)
        raise ApiError("Invalid API Key", 401)

    # -- helpers --

    def _issue_tokens(self, record: UserRecord, *, refresh: bool = True) -> dict[str, str]:
        assert record.jwk_id is not None
        now = self._clock()

        def token(kind: str, lifetime: float) -> str:
            claims = core.token_claims(
                record.username,
                kind,
                issuer=ISSUER,
                now=now,
                lifetime=lifetime,
                jti=secrets.token_hex(8),
            )
            return core.encode_jwt(self._secret, record.jwk_id or "", claims)

        tokens = {"token": token("access", core.ACCESS_TOKEN_LIFETIME)}
        if refresh:
            tokens["refresh_token"] = token("refresh", self.config.login_timeout * 86400)
        return tokens

    def _source(self, source: str | None) -> str:
        source = (source or self.config.default_source).lower()
        if source != "moonraker":
            raise ApiError(f"Invalid 'source': {source} (trioprint has local users only)")
        return source

    def _notify(self, method: str, username: str) -> None:
        self._bus.publish(Notify(method, ({"username": username},)))

    def _forget_sessions(self, username: str) -> None:
        """Websockets authenticated as ``username`` need to authenticate again."""
        if self._websockets is None:
            return
        for conn in self._websockets.connections():
            if conn.user is not None and conn.user.username == username:
                conn.user = None

    async def _hash(self, password: str) -> PasswordHash:
        salt = secrets.token_bytes(16)
        return await trio.to_thread.run_sync(
            lambda: core.hash_password(password, salt, **self._hash_params)
        )

    async def _start_session(self, record: UserRecord) -> None:
        if record.jwk_id is None:
            record.jwk_id = secrets.token_urlsafe(16)
            await self._save_user(record)

    # -- endpoints --

    @endpoint("/access/login", "POST", params=LoginParams, auth=False)
    async def login(self, call: Call[LoginParams]) -> dict[str, Any]:
        p = call.params
        address = core.normalize_address(call.remote) or ""
        limit = self.config.max_login_attempts
        if limit is not None and self.failed_logins.get(address, 0) >= limit:
            raise ApiError("Unauthorized, Maximum Login Attempts Reached", 401)
        source = self._source(p.source)
        if p.username in RESERVED_USERS:
            raise ApiError(f"Invalid Request for user {p.username}")
        record = self.users.get(p.username)
        password = None if record is None else record.password
        ok = password is not None and await trio.to_thread.run_sync(
            core.verify_password, p.password, password
        )
        if record is None or not ok:
            if limit is not None:
                self.failed_logins[address] = self.failed_logins.get(address, 0) + 1
            if record is None:
                raise ApiError(f"Unregistered User: {p.username}")
            raise ApiError("Invalid Password")
        self.failed_logins.pop(address, None)
        await self._start_session(record)
        if call.connection is not None:
            call.connection.user = record.user()
        return {
            "username": record.username,
            **self._issue_tokens(record),
            "source": source,
            "action": "user_logged_in",
        }

    @endpoint("/access/logout", "POST")
    async def logout(self, call: Call[NoParams]) -> dict[str, Any]:
        user = call.user
        if user is None:
            raise ApiError("No user logged in")
        record = self.users.get(user.username)
        if user.username in RESERVED_USERS or record is None:
            raise ApiError(f"Invalid log out request for user {user.username}")
        record.jwk_id = None
        await self._save_user(record)
        self._forget_sessions(user.username)
        self._notify("notify_user_logged_out", user.username)
        return {"username": user.username, "action": "user_logged_out"}

    @endpoint("/access/refresh_jwt", "POST", params=RefreshParams, auth=False)
    async def refresh_jwt(self, call: Call[RefreshParams]) -> dict[str, Any]:
        try:
            user = self.validate_jwt(call.params.refresh_token, "refresh")
        except ApiError:
            raise ApiError("Invalid Refresh Token", 401) from None
        record = self.users[user.username]
        return {
            "username": user.username,
            **self._issue_tokens(record, refresh=False),
            "source": record.source,
            "action": "user_jwt_refresh",
        }

    @endpoint("/access/user", "GET", "POST", "DELETE", params=UserParams)
    async def user(self, call: Call[UserParams]) -> dict[str, Any]:
        """One path, three methods: access.get_user, access.post_user, access.delete_user."""
        if call.verb == "GET":
            u = call.user
            if u is None:
                return {"username": None, "source": None, "created_on": None}
            return {"username": u.username, "source": u.source, "created_on": u.created_on}
        username = _required(call.params.username, "username")
        if call.verb == "DELETE":
            return await self._delete_user(username, call.user)
        return await self._create_user(
            username, _required(call.params.password, "password"), call.params.source
        )

    async def _create_user(
        self, username: str, password: str, source: str | None
    ) -> dict[str, Any]:
        source = self._source(source)
        if not username or username in RESERVED_USERS:
            raise ApiError(f"Invalid Request for user {username!r}")
        if username in self.users:
            raise ApiError(f"User {username} already exists")
        hashed = await self._hash(password)
        if username in self.users:  # created meanwhile
            raise ApiError(f"User {username} already exists")
        record = UserRecord(username, source, self._clock(), hashed, secrets.token_urlsafe(16))
        self.users[username] = record  # taken, while it is written
        try:
            await self._save_user(record)
        except BaseException:
            del self.users[username]
            raise
        self._notify("notify_user_created", username)
        return {
            "username": username,
            **self._issue_tokens(record),
            "source": source,
            "action": "user_created",
        }

    async def _delete_user(self, username: str, current: User | None) -> dict[str, Any]:
        if current is not None and current.username == username:
            raise ApiError(f"Cannot delete logged in user {username}")
        if username in RESERVED_USERS:
            raise ApiError(f"Invalid Request for reserved user {username}")
        if username not in self.users:
            raise ApiError(f"No registered user: {username}")
        del self.users[username]
        await self._db.delete_item(NAMESPACE, ["users", username])
        self._forget_sessions(username)
        self._notify("notify_user_deleted", username)
        return {"username": username, "action": "user_deleted"}

    @endpoint("/access/users/list", "GET")
    async def users_list(self, call: Call[NoParams]) -> dict[str, Any]:
        return {
            "users": [
                {"username": r.username, "source": r.source, "created_on": r.created_on}
                for r in self.users.values()
            ]
        }

    @endpoint("/access/user/password", "POST", params=PasswordParams)
    async def user_password(self, call: Call[PasswordParams]) -> dict[str, Any]:
        user = call.user
        if user is None:
            raise ApiError("No Current User")
        record = self.users.get(user.username)
        if user.username in RESERVED_USERS or record is None or record.password is None:
            raise ApiError(f"Invalid Reset Request for user {user.username}")
        stored = record.password
        if not await trio.to_thread.run_sync(core.verify_password, call.params.password, stored):
            raise ApiError("Invalid Password")
        changed = attrs.evolve(record, password=await self._hash(call.params.new_password))
        await self._save_user(changed)
        record.password = changed.password
        return {"username": user.username, "action": "user_password_reset"}

    @endpoint("/access/api_key", "GET", "POST")
    async def api_key_endpoint(self, call: Call[NoParams]) -> str:
        if call.verb == "POST":
            self.api_key, self._api_key_created = secrets.token_hex(16), self._clock()
            await self._db.insert_item(
                NAMESPACE, "api_key", {"key": self.api_key, "created_on": self._api_key_created}
            )
        return self.api_key

    @endpoint("/access/oneshot_token", "GET")
    async def oneshot_token(self, call: Call[NoParams]) -> str:
        token = base64.b32encode(secrets.token_bytes(20)).decode("ascii")
        return self.oneshots.issue(token, call.remote, call.user, self._clock())

    @endpoint("/access/info", "GET", auth=False)
    async def info(self, call: Call[NoParams]) -> dict[str, Any]:
        trusted = (
            call.user is not None and call.user.username == TRUSTED_USER
        ) or self.trusted.trusts(call.remote)
        return {
            "default_source": self.config.default_source,
            "available_sources": ["moonraker"],
            "login_required": self.logins_forced,
            "trusted": trusted,
        }

"""Authorization's pure core: JSON web tokens, password hashes, oneshot tokens, trusted clients.

No I/O and no clock of its own: the time (``now``, seconds since the epoch) and every random
value (secrets, salts, token ids) are arguments, so all of it is tested directly. Every
comparison of a secret, a signature, a key or a token goes through :func:`hmac.compare_digest`.

Tokens are JWTs signed with HS256 (HMAC-SHA256) under one per-install secret. The header names
the user's current session key id (``kid``): a token is only accepted while that id is the
user's, so a logout (which drops it) revokes every token issued before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import attrs

from . import strictjson

#: Lifetimes, in seconds.
ACCESS_TOKEN_LIFETIME = 3600
ONESHOT_LIFETIME = 5.0
#: The ``aud`` claim (the value Moonraker puts there; clients may look at it).
AUDIENCE = "Moonraker"
JWT_ALGORITHM = "HS256"

#: The pseudo-users of requests authenticated by the API key and by a trusted address.
API_USER = "_API_KEY_USER_"
TRUSTED_USER = "_TRUSTED_USER_"
RESERVED_USERS = (API_USER, TRUSTED_USER)

#: Trusted unless ``[authorization] trust_loopback: False``.
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenError(Exception):
    """A token that is not accepted (the message says why, for the logs and the 401)."""


@attrs.frozen
class User:
    """Who a request is from (a registered user, or one of :data:`RESERVED_USERS`)."""

    username: str
    source: str = "moonraker"
    created_on: float = 0.0


# --- base64url and JWTs -----------------------------------------------------------------------


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict: only the URL-safe alphabet, no padding, and the one canonical spelling (so a
    token cannot be altered into another string that decodes the same)."""
    if "=" in text:
        raise TokenError("invalid base64url")
    try:
        raw = text.encode("ascii")
        data = base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise TokenError("invalid base64url") from None
    if b64url_encode(data) != text:
        raise TokenError("invalid base64url")
    return data


def _sign(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def token_claims(
    username: str,
    token_type: str,
    *,
    issuer: str,
    now: float,
    lifetime: float,
    jti: str,
) -> dict[str, Any]:
    """The claims of a new access or refresh token."""
    iat = int(now)
    return {
        "iss": issuer,
        "aud": AUDIENCE,
        "iat": iat,
        "exp": iat + int(lifetime),
        "jti": jti,
        "username": username,
        "token_type": token_type,
    }


def encode_jwt(secret: bytes, kid: str, claims: Mapping[str, Any]) -> str:
    header = {"alg": JWT_ALGORITHM, "typ": "JWT", "kid": kid}
    signing_input = (
        b64url_encode(strictjson.dumps(header).encode())
        + "."
        + b64url_encode(strictjson.dumps(dict(claims)).encode())
    )
    return signing_input + "." + b64url_encode(_sign(secret, signing_input.encode("ascii")))


@attrs.frozen
class Claims:
    """A verified token: its header's key id and its claims."""

    kid: str
    username: str
    token_type: str
    issued_at: int
    expires: int
    jti: str


def _json_object(part: str) -> dict[str, Any]:
    try:
        value = strictjson.loads(b64url_decode(part))
    except (ValueError, RecursionError):
        raise TokenError("invalid JWT encoding") from None
    if not isinstance(value, dict):
        raise TokenError("invalid JWT encoding")
    return value


def _int_claim(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TokenError(f"JWT claim '{name}' missing or not an integer")
    return value


def _str_claim(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str):
        raise TokenError(f"JWT claim '{name}' missing or not a string")
    return value


def decode_jwt(
    secret: bytes,
    token: str,
    *,
    now: float,
    issuer: str,
    token_type: str = "access",
) -> Claims:
    """Verify ``token``'s signature and claims (``iss``, ``aud``, ``exp``, ``iat``, ``jti``,
    ``username``, ``token_type``); raise :class:`TokenError` for anything wrong."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed JWT")
    header = _json_object(parts[0])
    # The algorithm is fixed: "none" or any other choice an attacker writes is refused.
    if header.get("alg") != JWT_ALGORITHM or header.get("typ") != "JWT":
        raise TokenError("invalid JWT header")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise TokenError("invalid JWT header")
    expected = _sign(secret, f"{parts[0]}.{parts[1]}".encode("ascii"))
    if not hmac.compare_digest(expected, b64url_decode(parts[2])):
        raise TokenError("invalid JWT signature")
    payload = _json_object(parts[1])
    kind = _str_claim(payload, "token_type")
    if not hmac.compare_digest(kind.encode(), token_type.encode()):
        raise TokenError(f"JWT token type mismatch: expected {token_type}, got {kind}")
    if not hmac.compare_digest(_str_claim(payload, "iss").encode(), issuer.encode()):
        raise TokenError("invalid JWT issuer")
    if not hmac.compare_digest(_str_claim(payload, "aud").encode(), AUDIENCE.encode()):
        raise TokenError("invalid JWT audience")
    issued, expires = _int_claim(payload, "iat"), _int_claim(payload, "exp")
    if now >= expires:
        raise TokenError("JWT expired")
    if issued > now + 60:  # a little clock skew is tolerated, a token from the future is not
        raise TokenError("JWT issued in the future")
    return Claims(
        kid, _str_claim(payload, "username"), kind, issued, expires, _str_claim(payload, "jti")
    )


# --- passwords --------------------------------------------------------------------------------

#: scrypt cost: 16 MiB of memory, OWASP's N=2^14, r=8, p=5 (about 0.2 s per hash on a desktop
#: core; it runs in a worker thread).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 5


@attrs.frozen
class PasswordHash:
    """A salted scrypt hash with its parameters (stored as they are, so they can change)."""

    salt: str  # hex
    hash: str  # hex
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P
    algorithm: str = "scrypt"

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PasswordHash:
        return cls(
            salt=str(data["salt"]),
            hash=str(data["hash"]),
            n=int(data["n"]),
            r=int(data["r"]),
            p=int(data["p"]),
            algorithm=str(data.get("algorithm", "scrypt")),
        )


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r + 1024 * 1024,
        dklen=32,
    )


def hash_password(
    password: str, salt: bytes, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> PasswordHash:
    if len(salt) < 16:
        raise ValueError("a salt of at least 16 bytes is required")
    return PasswordHash(salt.hex(), _scrypt(password, salt, n, r, p).hex(), n, r, p)


def verify_password(password: str, stored: PasswordHash) -> bool:
    if stored.algorithm != "scrypt":
        return False
    try:
        salt, digest = bytes.fromhex(stored.salt), bytes.fromhex(stored.hash)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(password, salt, stored.n, stored.r, stored.p), digest)


# --- secrets ----------------------------------------------------------------------------------


def same_secret(given: str, expected: str) -> bool:
    """Constant-time equality of two secrets (an empty one never matches)."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


# --- oneshot tokens ---------------------------------------------------------------------------


@attrs.define
class _Oneshot:
    token: str
    address: str | None
    user: User | None
    expires: float


class OneshotTokens:
    """Tokens valid once, for :data:`ONESHOT_LIFETIME` seconds, from the address they were
    issued to (``?token=`` on a download link or a websocket URL)."""

    def __init__(self, lifetime: float = ONESHOT_LIFETIME) -> None:
        self.lifetime = lifetime
        self._tokens: list[_Oneshot] = []

    def __len__(self) -> int:
        return len(self._tokens)

    def issue(self, token: str, address: str | None, user: User | None, now: float) -> str:
        self.prune(now)
        self._tokens.append(_Oneshot(token, normalize_address(address), user, now + self.lifetime))
        return token

    def prune(self, now: float) -> None:
        self._tokens = [t for t in self._tokens if now < t.expires]

    def redeem(self, token: str, address: str | None, now: float) -> User | None:
        """The user the token was issued for (a TRUSTED pseudo-user if it was issued to a
        request without one), or None. A presented token is used up whatever the outcome."""
        self.prune(now)
        found: _Oneshot | None = None
        # every live token is compared (there are few): the time taken does not say which
        for entry in self._tokens:
            if hmac.compare_digest(entry.token.encode(), token.encode()):
                found = entry
        if found is None:
            return None
        self._tokens.remove(found)
        if found.address != normalize_address(address):
            return None
        return found.user if found.user is not None else User(TRUSTED_USER)


# --- trusted clients --------------------------------------------------------------------------


def parse_address(text: str | None) -> IPAddress | None:
    """An address from a transport (``"::ffff:10.0.0.1"`` is taken as ``10.0.0.1``)."""
    if not text:
        return None
    text = text.strip().strip("[]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def normalize_address(text: str | None) -> str | None:
    address = parse_address(text)
    return None if address is None else str(address)


@attrs.frozen
class TrustedClients:
    """``[authorization] trusted_clients``: addresses, CIDR ranges and host names (matched by
    the addresses they resolved to at start-up), plus loopback unless disabled."""

    addresses: frozenset[IPAddress] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    hostnames: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str], *, trust_loopback: bool = True) -> TrustedClients:
        addresses: set[IPAddress] = set()
        networks: list[IPNetwork] = list(LOOPBACK) if trust_loopback else []
        hostnames: list[str] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            address = parse_address(entry)
            if address is not None:
                addresses.add(address)
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            hostnames.append(entry.lower().rstrip("."))
        return cls(frozenset(addresses), tuple(networks), tuple(hostnames))

    def with_resolved(self, resolved: Mapping[str, Iterable[str]]) -> TrustedClients:
        """Add the addresses the host names resolved to (``{hostname: [address, ...]}``)."""
        extra = {
            a
            for name in self.hostnames
            for text in resolved.get(name, ())
            if (a := parse_address(text)) is not None
        }
        return attrs.evolve(self, addresses=self.addresses | extra)

    def trusts(self, address: str | None) -> bool:
        parsed = parse_address(address)
        if parsed is None:
            return False
        if parsed in self.addresses:
            return True
        return any(parsed.version == net.version and parsed in net for net in self.networks)


# --- credentials of a request -----------------------------------------------------------------


@attrs.frozen
class Credentials:
    """What a request presents: its address and any key or token it carries."""

    address: str | None
    access_token: str | None = None
    api_key: str | None = None
    oneshot: str | None = None


def credentials_from(
    address: str | None, headers: Mapping[str, str], query: Mapping[str, str]
) -> Credentials:
    """Moonraker's places: ``Authorization: Bearer <jwt>`` (another scheme is ignored),
    ``X-Access-Token``, ``?access_token=``; ``X-Api-Key``; ``?token=`` (oneshot).
    ``headers`` has lower-case names."""
    access: str | None
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        access = value.strip() if scheme.lower() == "bearer" else None
    else:
        access = headers.get("x-access-token") or query.get("access_token")
    return Credentials(
        address,
        access_token=access or None,
        api_key=headers.get("x-api-key") or None,
        oneshot=query.get("token") or None,
    )


class Authenticator(Protocol):
    """What a transport asks before it serves a request (``components/auth.py``)."""

    def authenticate(self, creds: Credentials, *, required: bool) -> User | None:
        """The request's user; with ``required``, no user is an ``ApiError(401)``."""
        ...

"""The pure authorization core (domain/auth.py): tokens, passwords, oneshot tokens, addresses."""

from __future__ import annotations

import base64
import ipaddress
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioprint.domain import auth
from trioprint.domain.auth import (
    OneshotTokens,
    PasswordHash,
    TokenError,
    TrustedClients,
    User,
    credentials_from,
    decode_jwt,
    encode_jwt,
    token_claims,
)

SECRET = b"k" * 32
NOW = 1_700_000_000.0
CHEAP = {"n": 16, "r": 1, "p": 1}  # the KDF's cost does not change what is tested here


def make_token(
    username: str = "alice",
    kind: str = "access",
    *,
    secret: bytes = SECRET,
    kid: str = "kid1",
    now: float = NOW,
    lifetime: float = 3600,
    issuer: str = "trioprint",
) -> str:
    claims = token_claims(username, kind, issuer=issuer, now=now, lifetime=lifetime, jti="j1")
    return encode_jwt(secret, kid, claims)


def verify(token: str, *, now: float = NOW + 1, kind: str = "access") -> auth.Claims:
    return decode_jwt(SECRET, token, now=now, issuer="trioprint", token_type=kind)


@given(username=st.text(), kid=st.text(min_size=1), lifetime=st.integers(2, 10**8))
def test_jwt_round_trip(username: str, kid: str, lifetime: int) -> None:
    claims = verify(make_token(username, kid=kid, lifetime=lifetime))
    assert (claims.username, claims.kid, claims.token_type) == (username, kid, "access")
    assert claims.expires - claims.issued_at == lifetime
    assert claims.jti == "j1"


@given(data=st.data())
def test_any_altered_character_is_rejected(data: st.DataObject) -> None:
    token = make_token()
    i = data.draw(st.integers(0, len(token) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda c: c != token[i]))
    with pytest.raises(TokenError):
        verify(token[:i] + replacement + token[i + 1 :])


def test_tampered_claims_with_the_old_signature_are_rejected() -> None:
    header, payload, sig = make_token("alice").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["username"] = "admin"
    forged = auth.b64url_encode(json.dumps(claims).encode())
    with pytest.raises(TokenError, match="signature"):
        verify(f"{header}.{forged}.{sig}")


def test_wrong_secret_expired_and_wrong_claims_are_rejected() -> None:
    with pytest.raises(TokenError, match="signature"):
        verify(make_token(secret=b"other" * 8))
    token = make_token(lifetime=3600)
    verify(token, now=NOW + 3599)
    with pytest.raises(TokenError, match="expired"):
        verify(token, now=NOW + 3600)
    with pytest.raises(TokenError, match="type"):
        verify(make_token(kind="refresh"))
    with pytest.raises(TokenError, match="issuer"):
        verify(make_token(issuer="someone-else"))
    with pytest.raises(TokenError, match="future"):
        verify(make_token(now=NOW + 3600), now=NOW)


def test_alg_none_and_missing_claims_are_rejected() -> None:
    header = auth.b64url_encode(b'{"alg":"none","typ":"JWT","kid":"kid1"}')
    payload = make_token().split(".")[1]
    with pytest.raises(TokenError, match="header"):
        verify(f"{header}.{payload}.")
    # a correctly signed token without an audience
    claims = token_claims("a", "access", issuer="trioprint", now=NOW, lifetime=60, jti="x")
    del claims["aud"]
    with pytest.raises(TokenError, match="aud"):
        verify(encode_jwt(SECRET, "kid1", claims))
    for bad in ("", "a.b", "a.b.c.d", "...", "x" * 10_000):
        with pytest.raises(TokenError):
            verify(bad)


@given(
    password=st.text(max_size=64),
    other=st.text(max_size=64),
    salt=st.binary(min_size=16, max_size=32),
)
def test_password_hash_verifies_only_its_password(password: str, other: str, salt: bytes) -> None:
    stored = auth.hash_password(password, salt, **CHEAP)
    assert auth.verify_password(password, stored)
    assert auth.verify_password(other, stored) == (other == password)
    assert PasswordHash.from_json(json.loads(json.dumps(stored.to_json()))) == stored


def test_password_hash_is_salted_and_keeps_its_parameters() -> None:
    a = auth.hash_password("secret", b"a" * 16, **CHEAP)
    b = auth.hash_password("secret", b"b" * 16, **CHEAP)
    assert a.hash != b.hash
    default = auth.hash_password("secret", b"c" * 16)
    assert (default.n, default.r, default.p) == (auth.SCRYPT_N, auth.SCRYPT_R, auth.SCRYPT_P)
    assert auth.verify_password("secret", default)
    with pytest.raises(ValueError, match="salt"):
        auth.hash_password("secret", b"short")


def test_oneshot_token_single_use_expiry_and_address() -> None:
    tokens = OneshotTokens()
    user = User("alice")
    tokens.issue("T1", "10.0.0.1", user, NOW)
    assert tokens.redeem("T1", "10.0.0.1", NOW + 4.9) == user
    assert tokens.redeem("T1", "10.0.0.1", NOW + 4.9) is None  # used up

    tokens.issue("T2", "10.0.0.1", user, NOW)
    assert tokens.redeem("T2", "10.0.0.1", NOW + 5.0) is None  # expired
    assert len(tokens) == 0

    tokens.issue("T3", "10.0.0.1", user, NOW)
    assert tokens.redeem("T3", "10.0.0.2", NOW) is None  # another address uses it up
    assert tokens.redeem("T3", "10.0.0.1", NOW) is None

    tokens.issue("T4", "::ffff:10.0.0.1", user, NOW)
    assert tokens.redeem("T4", "10.0.0.1", NOW) == user  # the same address, IPv4-mapped
    assert tokens.redeem("nope", "10.0.0.1", NOW) is None


@given(
    st.lists(st.text(alphabet="ABCDEFGHIJ", min_size=1, max_size=4), unique=True, max_size=8),
    st.text(alphabet="ABCDEFGHIJ", max_size=4),
)
def test_oneshot_redeems_only_an_issued_token(issued: list[str], presented: str) -> None:
    tokens = OneshotTokens()
    for token in issued:
        tokens.issue(token, "10.0.0.1", User("u"), NOW)
    assert (tokens.redeem(presented, "10.0.0.1", NOW) is not None) == (presented in issued)


ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


@given(net_addr=ipv4 | ipv6, prefix=st.integers(0, 128), probe=ipv4 | ipv6)
def test_cidr_matching(
    net_addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
    prefix: int,
    probe: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    prefix = min(prefix, net_addr.max_prefixlen)
    network = ipaddress.ip_network(f"{net_addr}/{prefix}", strict=False)
    trusted = TrustedClients.parse([str(network)], trust_loopback=False)
    expected = probe.version == network.version and probe in network
    if isinstance(probe, ipaddress.IPv6Address) and probe.ipv4_mapped is not None:
        mapped = probe.ipv4_mapped
        expected = network.version == 4 and mapped in network
    assert trusted.trusts(str(probe)) == expected


def test_trusted_clients_addresses_loopback_and_hostnames() -> None:
    default = TrustedClients.parse([])
    assert default.trusts("127.0.0.1")
    assert default.trusts("127.9.9.9")
    assert default.trusts("::1")
    assert default.trusts("::ffff:127.0.0.1")
    assert not default.trusts("10.0.0.1")
    assert not default.trusts(None)
    assert not default.trusts("not-an-address")
    strict = TrustedClients.parse(["10.0.0.7", "printer.local"], trust_loopback=False)
    assert not strict.trusts("127.0.0.1")
    assert strict.trusts("10.0.0.7")
    assert not strict.trusts("10.0.0.8")
    assert strict.hostnames == ("printer.local",)
    resolved = strict.with_resolved({"printer.local": ["192.168.1.20", "fe80::1"]})
    assert resolved.trusts("192.168.1.20")
    assert resolved.trusts("fe80::1")
    assert not resolved.trusts("192.168.1.21")


def test_credentials_from_headers_and_query() -> None:
    c = credentials_from("1.2.3.4", {"authorization": "Bearer abc"}, {"access_token": "zzz"})
    assert c.access_token == "abc"
    assert c.address == "1.2.3.4"
    assert credentials_from(None, {"authorization": "Basic xyz"}, {}).access_token is None
    assert credentials_from(None, {"x-access-token": "t"}, {}).access_token == "t"
    assert credentials_from(None, {}, {"access_token": "q"}).access_token == "q"
    c = credentials_from(None, {"x-api-key": "K"}, {"token": "O"})
    assert (c.api_key, c.oneshot, c.access_token) == ("K", "O", None)


def test_secret_comparisons_use_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: bytes | str, b: bytes | str) -> bool:
        calls.append((a, b))
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert auth.same_secret("key", "key")
    assert calls
    calls.clear()
    verify(make_token())
    assert len(calls) >= 3  # the signature, the token type, the issuer, the audience
    calls.clear()
    stored = auth.hash_password("pw", b"s" * 16, **CHEAP)
    assert auth.verify_password("pw", stored)
    assert calls
    calls.clear()
    tokens = OneshotTokens()
    tokens.issue("T", None, None, NOW)
    tokens.redeem("T", None, NOW)
    assert calls

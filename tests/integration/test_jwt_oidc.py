"""JwtVerifier against a real JWKS endpoint: a tiny HTTP server on loopback, started per test.

Time is a fake monotonic clock handed to the verifier, so refetch intervals and cache ages are
advanced by the test instead of slept through; fetches are counted in the request handler.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from echonats.adapters.jwt_auth import JwtVerifier
from echonats.model.errors import Unauthenticated
from echonats.settings import AuthSettings

ISSUER = "http://idp.test/realms/echonats"
AUDIENCE = "echonats"
TENANT = uuid.UUID("0b6a3f0e-5d0c-4c55-a2de-9b0c7a1e0001")
INTERVAL_S = 10.0


# -- keys and tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    rsa1: rsa.RSAPrivateKey
    rsa2: rsa.RSAPrivateKey
    ec256: ec.EllipticCurvePrivateKey
    ec384: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa1=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa2=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec256=ec.generate_private_key(ec.SECP256R1()),
        ec384=ec.generate_private_key(ec.SECP384R1()),
    )


def _rsa_jwk(key: rsa.RSAPrivateKey, kid: str, alg: str | None) -> dict[str, Any]:
    jwk: dict[str, Any] = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}
    return {**jwk, "alg": alg} if alg else jwk


def _ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str, alg: str | None) -> dict[str, Any]:
    jwk: dict[str, Any] = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}
    return {**jwk, "alg": alg} if alg else jwk


def _default_jwks(keys: Keys) -> dict[str, Any]:
    return {
        "keys": [
            _rsa_jwk(keys.rsa1, "rsa-1", "RS256"),
            _rsa_jwk(keys.rsa1, "rsa-any", None),  # no `alg`: any RSA algorithm we accept
            _ec_jwk(keys.ec256, "ec-256", "ES256"),
            _ec_jwk(keys.ec384, "ec-384", None),
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ"},  # ignored
            {**_rsa_jwk(keys.rsa2, "rsa-enc", None), "use": "enc"},  # ignored
        ]
    }


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "kc-user-1",
        "iss": ISSUER,
        "aud": [AUDIENCE, "account"],
        "iat": now,
        "exp": now + 300,
        "tenant_id": str(TENANT),
        "preferred_username": "ada",
        "email": "ada@example.org",
        "realm_access": {"roles": ["platform-admin", "offline_access"]},
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(key: Any, kid: str, alg: str, **overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), key, algorithm=alg, headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- the JWKS endpoint -----------------------------------------------------------------------------


@dataclass
class JwksState:
    jwks: dict[str, Any]
    status: int = 200
    body: bytes | None = None  # overrides the JSON of `jwks` when set
    requests: int = 0
    gate: threading.Event | None = None  # when set, requests wait for it before answering
    received: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _JwksHandler(BaseHTTPRequestHandler):
    state: ClassVar[JwksState]

    def do_GET(self) -> None:
        state = self.state
        with state.lock:
            state.requests += 1
            status = state.status
            body = state.body if state.body is not None else json.dumps(state.jwks).encode()
        state.received.set()
        if state.gate is not None and not state.gate.wait(timeout=5):
            status = 504
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class JwksServer:
    url: str
    state: JwksState


@pytest.fixture
def jwks_server(keys: Keys) -> Iterator[JwksServer]:
    state = JwksState(jwks=_default_jwks(keys))
    handler = type("Handler", (_JwksHandler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval: shutdown() waits for the serving loop to notice (0.5 s by default).
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), name="jwks-server", daemon=True)
    thread.start()
    try:
        yield JwksServer(url=f"http://127.0.0.1:{server.server_address[1]}/certs", state=state)
    finally:
        if state.gate is not None:
            state.gate.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _verifier(url: str, clock: FakeClock, **auth: Any) -> JwtVerifier:
    settings = AuthSettings(jwks_url=url, issuer=ISSUER, audience=AUDIENCE, **auth)
    return JwtVerifier(settings, jwks_refresh_min_interval_s=INTERVAL_S, clock=clock)


@pytest.fixture
def verifier(jwks_server: JwksServer, clock: FakeClock) -> JwtVerifier:
    return _verifier(jwks_server.url, clock)


# -- accepted --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "kid", "key_name"),
    [
        ("RS256", "rsa-1", "rsa1"),
        ("ES256", "ec-256", "ec256"),
        ("ES384", "ec-384", "ec384"),
        ("RS384", "rsa-any", "rsa1"),
        ("PS256", "rsa-any", "rsa1"),
    ],
)
async def test_valid_tokens_are_accepted(
    verifier: JwtVerifier, jwks_server: JwksServer, keys: Keys, alg: str, kid: str, key_name: str
) -> None:
    token = _sign(getattr(keys, key_name), kid, alg)
    principal = await verifier.verify(token)
    assert principal.user_id == "kc-user-1"
    assert principal.tenant_id == TENANT
    assert principal.display_name == "ada"
    assert principal.email == "ada@example.org"
    assert principal.is_platform_admin
    await verifier.verify(token)
    assert jwks_server.state.requests == 1  # the key set is cached


async def test_secret_and_jwks_each_verify_only_their_own_algorithms(
    jwks_server: JwksServer, keys: Keys
) -> None:
    secret = "integration-test-secret-0123456789abcdef"
    verifier = _verifier(jwks_server.url, FakeClock(), jwt_secret=secret)
    assert (await verifier.verify(_sign(keys.rsa1, "rsa-1", "RS256"))).user_id == "kc-user-1"
    assert (await verifier.verify(_sign(secret, "rsa-1", "HS256"))).user_id == "kc-user-1"
    # Algorithm confusion: an HMAC keyed with the issuer's public key (known to all) is not the secret.
    pem = keys.rsa1.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(_claims()).encode())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(Unauthenticated, match=r"^token signature is invalid$"):
        await verifier.verify(f"{signing_input}.{_b64(signature)}")
    with pytest.raises(Unauthenticated, match=r"^token algorithm is not supported$"):
        await _verifier(jwks_server.url, FakeClock()).verify(_sign(secret, "rsa-1", "HS256"))


async def test_fetch_does_not_block_the_event_loop(
    verifier: JwtVerifier, jwks_server: JwksServer, keys: Keys
) -> None:
    gate = jwks_server.state.gate = threading.Event()
    task = asyncio.create_task(verifier.verify(_sign(keys.rsa1, "rsa-1", "RS256")))
    # The handler holds the response until the gate opens. Had the fetch run on the loop, this
    # coroutine could not get here to open it, and the handler would give up with a 504.
    assert await asyncio.to_thread(jwks_server.state.received.wait, 5)
    assert not task.done()
    gate.set()
    assert (await task).user_id == "kc-user-1"


# -- key rotation and refetching -------------------------------------------------------------------


async def test_key_rotation_refetches_once_for_concurrent_callers(
    verifier: JwtVerifier, jwks_server: JwksServer, keys: Keys, clock: FakeClock
) -> None:
    state = jwks_server.state
    state.jwks = {"keys": [_rsa_jwk(keys.rsa1, "old", "RS256")]}
    old_token = _sign(keys.rsa1, "old", "RS256")
    await verifier.verify(old_token)
    assert state.requests == 1

    state.jwks = {"keys": [_rsa_jwk(keys.rsa2, "new", "RS256")]}
    clock.advance(INTERVAL_S)
    new_token = _sign(keys.rsa2, "new", "RS256")
    principals = await asyncio.gather(*(verifier.verify(new_token) for _ in range(20)))
    assert {p.user_id for p in principals} == {"kc-user-1"}
    assert state.requests == 2  # one fetch shared by all twenty

    # The issuer no longer publishes the old key, so its tokens stop verifying.
    with pytest.raises(Unauthenticated, match=r"^token signing key is unknown$"):
        await verifier.verify(old_token)
    assert state.requests == 2


async def test_new_key_within_the_interval_waits_for_the_next_refetch(
    verifier: JwtVerifier, jwks_server: JwksServer, keys: Keys, clock: FakeClock
) -> None:
    await verifier.verify(_sign(keys.rsa1, "rsa-1", "RS256"))
    jwks_server.state.jwks["keys"].append(_rsa_jwk(keys.rsa2, "new", "RS256"))
    new_token = _sign(keys.rsa2, "new", "RS256")
    with pytest.raises(Unauthenticated, match=r"^token signing key is unknown$"):
        await verifier.verify(new_token)
    assert jwks_server.state.requests == 1
    clock.advance(INTERVAL_S)
    assert (await verifier.verify(new_token)).user_id == "kc-user-1"
    assert jwks_server.state.requests == 2


@pytest.mark.parametrize(
    ("kid", "key_name"),
    [
        ("no-such-kid", "rsa1"),
        ("rsa-enc", "rsa2"),  # published, but for encryption (`use: enc`)
        ("hmac", "rsa1"),  # published, but an `oct` key: never a JWKS signing key here
    ],
)
async def test_unknown_kid_is_rejected(
    verifier: JwtVerifier, jwks_server: JwksServer, keys: Keys, kid: str, key_name: str
) -> None:
    with pytest.raises(Unauthenticated, match=r"^token signing key is unknown$"):
        await verifier.verify(_sign(getattr(keys, key_name), kid, "RS256"))
    assert jwks_server.state.requests == 1


async def test_token_without_kid_is_rejected(verifier: JwtVerifier, keys: Keys) -> None:
    token = jwt.encode(_claims(), keys.rsa1, algorithm="RS256")
    with pytest.raises(Unauthenticated, match=r"^token has no key id \(kid\)$"):
        await verifier.verify(token)


async def test_random_kids_refetch_at_most_once_per_interval(
    verifier: JwtVerifier, jwks_server: JwksServer, keys: Keys, clock: FakeClock
) -> None:
    state = jwks_server.state

    async def random_kids(count: int) -> None:
        tokens = [_sign(keys.rsa1, uuid.uuid4().hex, "RS256") for _ in range(count)]
        results = await asyncio.gather(*(verifier.verify(t) for t in tokens), return_exceptions=True)
        assert all(isinstance(r, Unauthenticated) for r in results)

    await verifier.verify(_sign(keys.rsa1, "rsa-1", "RS256"))
    assert state.requests == 1
    await random_kids(50)
    assert state.requests == 1  # the initial fetch was just now
    clock.advance(INTERVAL_S)
    await random_kids(50)
    assert state.requests == 2
    clock.advance(INTERVAL_S / 2)
    await random_kids(50)
    assert state.requests == 2
    clock.advance(INTERVAL_S / 2)
    await random_kids(50)
    assert state.requests == 3
    assert (await verifier.verify(_sign(keys.rsa1, "rsa-1", "RS256"))).user_id == "kc-user-1"
    assert state.requests == 3


# -- rejected --------------------------------------------------------------------------------------


async def test_hs256_signed_with_the_public_key_pem_is_rejected(
    verifier: JwtVerifier, jwks_server: JwksServer, keys: Keys
) -> None:
    pem = keys.rsa1.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(jwt.InvalidKeyError):  # pyjwt refuses to make such a token itself
        jwt.encode(_claims(), pem, algorithm="HS256")
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(_claims()).encode())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(Unauthenticated, match=r"^token algorithm is not supported$"):
        await verifier.verify(f"{signing_input}.{_b64(signature)}")
    assert jwks_server.state.requests == 0  # refused on the header alone


async def test_alg_none_is_rejected(verifier: JwtVerifier, jwks_server: JwksServer) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).encode())
    token = f"{header}.{_b64(json.dumps(_claims()).encode())}."
    with pytest.raises(Unauthenticated, match=r"^token algorithm is not supported$"):
        await verifier.verify(token)
    assert jwks_server.state.requests == 0


@pytest.mark.parametrize(
    ("alg", "kid", "key_name"),
    [
        ("RS384", "rsa-1", "rsa1"),  # the JWK says RS256
        ("ES256", "rsa-any", "ec256"),  # an EC signature under an RSA key's kid
        ("ES384", "ec-256", "ec384"),  # wrong curve for the kid
    ],
)
async def test_algorithm_must_fit_the_key(
    verifier: JwtVerifier, keys: Keys, alg: str, kid: str, key_name: str
) -> None:
    with pytest.raises(Unauthenticated, match=r"^token algorithm does not match its signing key$"):
        await verifier.verify(_sign(getattr(keys, key_name), kid, alg))


async def test_signature_by_another_key_is_rejected(verifier: JwtVerifier, keys: Keys) -> None:
    with pytest.raises(Unauthenticated, match=r"^token signature is invalid$"):
        await verifier.verify(_sign(keys.rsa2, "rsa-1", "RS256"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": int(time.time()) - 120}, "^token has expired$"),
        ({"nbf": int(time.time()) + 3600}, "^token is not yet valid$"),
        ({"iss": "http://evil.test/realms/echonats"}, "^token issuer is not accepted$"),
        ({"iss": None}, "^token lacks the 'iss' claim$"),
        ({"aud": "account"}, "^token audience is not accepted$"),
        ({"aud": None}, "^token lacks the 'aud' claim$"),
    ],
)
async def test_invalid_claims_are_rejected(
    verifier: JwtVerifier, keys: Keys, overrides: dict[str, Any], message: str
) -> None:
    for kid, key, alg in (("rsa-1", keys.rsa1, "RS256"), ("ec-256", keys.ec256, "ES256")):
        with pytest.raises(Unauthenticated, match=message):
            await verifier.verify(_sign(key, kid, alg, **overrides))


# -- the issuer being down -------------------------------------------------------------------------


async def test_cached_keys_keep_working_while_the_issuer_is_down(
    verifier: JwtVerifier,
    jwks_server: JwksServer,
    keys: Keys,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = jwks_server.state
    token = _sign(keys.rsa1, "rsa-1", "RS256")
    await verifier.verify(token)
    state.status = 503

    assert (await verifier.verify(token)).user_id == "kc-user-1"
    assert state.requests == 1  # cached and fresh: no fetch

    clock.advance(3600)  # the cached set is now old: a refresh is attempted, fails, the old key stays
    with caplog.at_level(logging.WARNING, logger="echonats.adapters.jwt_auth"):
        assert (await verifier.verify(token)).user_id == "kc-user-1"
    assert state.requests == 2
    assert any("JWKS fetch from" in r.getMessage() and "503" in r.getMessage() for r in caplog.records)

    assert (await verifier.verify(token)).user_id == "kc-user-1"
    assert state.requests == 2  # the failed attempt counts against the refetch interval

    clock.advance(INTERVAL_S)
    with pytest.raises(Unauthenticated, match=r"JWKS.*cannot be fetched"):
        await verifier.verify(_sign(keys.rsa2, "unknown", "RS256"))
    assert state.requests == 3

    state.status = 200
    clock.advance(INTERVAL_S)
    assert (await verifier.verify(token)).user_id == "kc-user-1"
    assert state.requests == 4


async def test_unreachable_issuer_without_cached_keys(clock: FakeClock, keys: Keys) -> None:
    with socket.socket() as sock:  # a loopback port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    verifier = _verifier(f"http://127.0.0.1:{port}/certs", clock)
    with pytest.raises(Unauthenticated, match=r"JWKS.*cannot be fetched"):
        await verifier.verify(_sign(keys.rsa1, "rsa-1", "RS256"))


@pytest.mark.parametrize(
    "body",
    [
        b"<html>login</html>",
        b"[]",
        b'{"keys": "none"}',
        b'{"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}',
    ],
)
async def test_unusable_jwks_responses(
    verifier: JwtVerifier, jwks_server: JwksServer, keys: Keys, body: bytes
) -> None:
    jwks_server.state.body = body
    with pytest.raises(Unauthenticated, match=r"JWKS.*cannot be fetched"):
        await verifier.verify(_sign(keys.rsa1, "rsa-1", "RS256"))
    assert jwks_server.state.requests == 1

"""Verifying callers' JWTs with pyjwt: HS256 with a shared secret, or an OIDC issuer's JWKS."""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.exceptions import InvalidSubjectError, PyJWTError
from jwt.types import Options

from echonats import model
from echonats.model import MAX_DISPLAY_NAME_CHARS, MAX_TOKEN_CHARS, Principal
from echonats.model.errors import ConfigError, Unauthenticated, ValidationFailed
from echonats.settings import AuthSettings

# -- verification ----------------------------------------------------------------------------------

log = logging.getLogger(__name__)

#: Algorithms accepted from an OIDC issuer's JWKS. Never HS*: a JWKS holds public keys, and an
#: HMAC "secret" taken from one is known to everybody (algorithm confusion).
JWKS_ALGORITHMS: frozenset[str] = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "PS256"})
#: Algorithms accepted with ``ECHONATS_JWT_SECRET`` (development / self-issued tokens).
SECRET_ALGORITHMS: frozenset[str] = frozenset({"HS256"})
MIN_SECRET_BYTES = 32  # RFC 7518 section 3.2: an HS256 key at least as long as the hash output

_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256"})
_EC_CURVE_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384"}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class _SigningKey:
    """A public key from the JWKS and the algorithms it may verify (its ``alg``, else its family)."""

    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    algorithms: frozenset[str]


class JwtVerifier:
    """``TokenVerifier`` over pyjwt: HS256 with ``ECHONATS_JWT_SECRET``, and/or an OIDC issuer's JWKS.

    With ``jwks_url`` set, asymmetric algorithms (:data:`JWKS_ALGORITHMS`) are verified with the
    issuer's keys; with a secret set (as well), HS256 with the secret only, never with JWKS keys.
    Keys are cached by ``kid``; an unknown ``kid`` refetches the JWKS, and a set older than
    ``jwks_max_age_s`` is refreshed (so removed keys stop verifying), but fetches are attempted at
    most once per ``jwks_refresh_min_interval_s`` however many tokens ask. Fetches run in a worker
    thread (pyjwt's client is blocking urllib) under one lock, so concurrent callers share them.
    When the issuer is unreachable, cached keys keep verifying.
    """

    def __init__(
        self,
        auth: AuthSettings,
        *,
        leeway_s: float = 30,
        jwks_refresh_min_interval_s: float = 10,
        jwks_max_age_s: float = 300,
        jwks_fetch_timeout_s: float = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer = auth.issuer or None
        self._audience = auth.audience or None
        self._tenant_claim = auth.tenant_claim
        self._roles_claim = auth.roles_claim
        self._leeway_s = leeway_s
        self._refresh_min_interval_s = jwks_refresh_min_interval_s
        self._max_age_s = jwks_max_age_s
        self._clock = clock

        self._jwks_url = auth.jwks_url or None
        self._jwks_client: jwt.PyJWKClient | None = None
        self._secret: str | None = None
        algorithms: set[str] = set()
        if self._jwks_url:
            algorithms |= JWKS_ALGORITHMS
            try:
                # No pyjwt-side caching or cooldown: this class owns both, so it can do them off the loop.
                self._jwks_client = jwt.PyJWKClient(
                    self._jwks_url, cache_jwk_set=False, timeout=jwks_fetch_timeout_s
                )
            except jwt.PyJWKClientError as exc:
                raise ConfigError(f"ECHONATS_JWT_JWKS_URL: {exc}") from exc
        if auth.jwt_secret:
            if len(auth.jwt_secret.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(f"ECHONATS_JWT_SECRET: must be at least {MIN_SECRET_BYTES} bytes for HS256")
            # Next to an issuer's keys too: development tokens keep working (`echonats token`).
            # HS256 is only ever verified with this secret, never with key material from the JWKS.
            algorithms |= SECRET_ALGORITHMS
            self._secret = auth.jwt_secret
        if not algorithms:
            raise ConfigError(
                "ECHONATS_JWT_SECRET: not set, and neither is ECHONATS_JWT_JWKS_URL; one of them is needed "
                "to verify tokens"
            )
        self._algorithms = frozenset(algorithms)

        require = ["sub", "exp"]
        if self._issuer:
            require.append("iss")
        if self._audience:
            require.append("aud")
        self._options: Options = {
            "require": require,
            # pyjwt rejects any token with an `aud` when no audience is configured; we only check it
            # when one is (IdPs such as Keycloak always put one in).
            "verify_aud": self._audience is not None,
            "enforce_minimum_key_length": True,  # a short key is an error, not a warning per request
        }

        self._keys: dict[str, _SigningKey] = {}
        self._fetched_at: float | None = None  # last successful JWKS fetch
        self._attempted_at: float | None = None  # last JWKS fetch attempt, successful or not
        self._fetch_error: str | None = None  # why the last attempt failed; None after a success
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> Principal:
        header = self._header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise Unauthenticated("token algorithm is not supported")
        key: str | rsa.RSAPublicKey | ec.EllipticCurvePublicKey
        if alg in SECRET_ALGORITHMS:
            assert self._secret is not None  # HS256 is accepted only with a secret
            key, algorithms = self._secret, SECRET_ALGORITHMS
        else:
            signing_key = await self._jwks_key(header.get("kid"))
            if alg not in signing_key.algorithms:
                raise Unauthenticated("token algorithm does not match its signing key")
            key, algorithms = signing_key.key, signing_key.algorithms
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=sorted(algorithms),
                options=self._options,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
            )
        except PyJWTError as exc:
            raise Unauthenticated(_reason(exc)) from exc
        return self._principal(claims)

    # -- header and keys ---------------------------------------------------------------------------

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        if not token:
            raise Unauthenticated("token is missing")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("token is too long")
        try:
            return jwt.get_unverified_header(token)
        except PyJWTError as exc:
            raise Unauthenticated("token is malformed") from exc

    async def _jwks_key(self, kid: object) -> _SigningKey:
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token has no key id (kid)")
        key = self._keys.get(kid)
        if key is None:
            return await self._refetch_for(kid)
        if self._is_stale() and not self._lock.locked():
            # Refresh an old set so that keys the issuer removed stop verifying. While a fetch is
            # already running, keep serving from the cache instead of queueing behind it.
            return await self._refetch_for(kid)
        return key

    async def _refetch_for(self, kid: str) -> _SigningKey:
        async with self._lock:
            key = self._keys.get(kid)
            if (key is None or self._is_stale()) and self._may_fetch():
                await self._fetch()
                key = self._keys.get(kid)
        if key is not None:
            return key
        if self._fetch_error is not None:
            raise Unauthenticated(
                "token signing key is unknown: the issuer's key set (JWKS) cannot be fetched"
            )
        raise Unauthenticated("token signing key is unknown")

    def _is_stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age_s

    def _may_fetch(self) -> bool:
        return (
            self._attempted_at is None or self._clock() - self._attempted_at >= self._refresh_min_interval_s
        )

    async def _fetch(self) -> None:
        """Replace the cached keys with the issuer's current set; on failure keep them and log why."""
        self._attempted_at = self._clock()
        try:
            keys = await asyncio.to_thread(self._load_jwks)
        except (PyJWTError, OSError, ValueError) as exc:
            self._fetch_error = str(exc) or type(exc).__name__
            log.warning(
                "JWKS fetch from %s failed (%s); %s",
                self._jwks_url,
                self._fetch_error,
                f"still using {len(self._keys)} cached keys" if self._keys else "no keys cached",
            )
            return
        self._keys = keys
        self._fetched_at = self._clock()
        self._fetch_error = None
        log.info("JWKS: %d signing keys from %s", len(keys), self._jwks_url)

    def _load_jwks(self) -> dict[str, _SigningKey]:
        """Fetch and parse the JWKS. Blocking: runs in a worker thread."""
        assert self._jwks_client is not None
        return _parse_jwks(self._jwks_client.fetch_data())

    # -- claims ------------------------------------------------------------------------------------

    def _principal(self, claims: dict[str, Any]) -> Principal:
        sub = claims.get("sub")
        if not isinstance(sub, str):
            raise Unauthenticated("token subject must be a string")
        try:
            model.user_id(sub, "token subject")  # the same rule as every other user id
        except ValidationFailed as exc:
            raise Unauthenticated(exc.message) from exc
        return Principal(
            user_id=sub,
            tenant_id=self._tenant_id(claims),
            display_name=_display_name(claims.get("name"))
            or _display_name(claims.get("preferred_username"))
            or _display_name(sub)
            or sub[:MAX_DISPLAY_NAME_CHARS],
            email=_email(claims.get("email")),
            roles=_roles(claims, self._roles_claim),
            expires_at=_expiry(claims["exp"]),  # required, and checked to be a number by pyjwt
        )

    def _tenant_id(self, claims: dict[str, Any]) -> uuid.UUID | None:
        raw = claims.get(self._tenant_claim)
        if raw is None:
            return None
        if isinstance(raw, str):
            try:
                return uuid.UUID(raw)
            except ValueError:
                pass
        raise Unauthenticated(f"token claim {self._tenant_claim!r} is not a tenant id (UUID)")


def _expiry(exp: int | float) -> datetime:
    try:
        return datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError):  # beyond what datetime holds: as good as never
        return datetime.max.replace(tzinfo=UTC)


def _reason(exc: PyJWTError) -> str:
    """A short, token-free reason for a pyjwt failure (pyjwt's own messages are not shown)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token is not yet valid"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "token signature is invalid"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "token issuer is not accepted"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "token audience is not accepted"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "token algorithm is not supported"
    if isinstance(exc, jwt.InvalidKeyError):
        return "token signing key is not acceptable"
    if isinstance(exc, InvalidSubjectError):
        return "token subject is malformed"
    return "token is malformed"


def _parse_jwks(data: object) -> dict[str, _SigningKey]:
    """Usable signing keys of a JWK Set by ``kid``; others (enc, oct/HMAC, unknown curves) are skipped."""
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError("the response is not a JWK Set")
    keys: dict[str, _SigningKey] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or kid in keys or entry.get("use", "sig") != "sig":
            continue
        algorithms = _key_algorithms(entry)
        if not algorithms:
            continue
        try:
            key = jwt.PyJWK(entry).key
        except PyJWTError:
            continue
        if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            key = key.public_key()  # an issuer that publishes private parts; verify with the public half
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            keys[kid] = _SigningKey(key=key, algorithms=algorithms)
    if not keys:
        raise ValueError(
            f"the JWK Set has no signing key with a kid for {', '.join(sorted(JWKS_ALGORITHMS))}"
        )
    return keys


def _key_algorithms(entry: dict[str, Any]) -> frozenset[str]:
    kty, crv, alg = entry.get("kty"), entry.get("crv"), entry.get("alg")
    if kty == "RSA":
        family = _RSA_ALGORITHMS
    elif kty == "EC" and isinstance(crv, str) and crv in _EC_CURVE_ALGORITHMS:
        family = frozenset({_EC_CURVE_ALGORITHMS[crv]})
    else:
        return frozenset()
    if alg is None:
        return family
    return family & {alg} if isinstance(alg, str) else frozenset()


def _display_name(value: object) -> str | None:
    """A usable display name from a claim: control characters and runs of whitespace become one space."""
    if not isinstance(value, str):
        return None
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in value)
    text = " ".join(text.split())[:MAX_DISPLAY_NAME_CHARS].strip()
    return text or None


def _email(value: object) -> str | None:
    """The claim if it is an email address by the domain's rule; otherwise the token has none."""
    if not isinstance(value, str):
        return None
    try:
        return model.email(value)
    except ValidationFailed:
        return None


def _lookup(claims: dict[str, Any], path: str) -> object:
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _roles(claims: dict[str, Any], path: str) -> frozenset[str]:
    value = _lookup(claims, path)
    if value is _MISSING:
        value = claims.get("roles")
    if not isinstance(value, list):
        return frozenset()
    return frozenset(role for role in value if isinstance(role, str) and role)

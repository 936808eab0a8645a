"""Who may call the service: CDS Hooks' JWT bearer tokens, checked with PyJWT.

Every request carries `Authorization: Bearer <JWT>`, signed by the CDS client with a private
key whose public half is configured here, per issuer, as a JWK Set (`--trust FILE`: a JSON
object {issuer: {"keys": [...]}}). The header must name the key (`kid`) and say `typ: JWT`;
the token must carry iss, aud (this endpoint's URL), exp, iat and jti. Unsigned (`none`) and
symmetric (HMAC) tokens are refused, as CDS Hooks requires; a `jku` in a token is never
fetched (the keys are the configured ones); a token is accepted once (its jti is remembered
until it expires).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import jwt

from dosing.core.errors import DosingError

LEEWAY_SECONDS = 30
"""Clock difference tolerated between the client and the service."""
MAX_REMEMBERED = 200_000
"""Token ids remembered against replay at most (a token lives minutes)."""
_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "EC:P-256": ("ES256",),
    "EC:P-384": ("ES384",),
    "EC:P-521": ("ES512",),
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "OKP:Ed25519": ("EdDSA",),
}
"""Asymmetric algorithms by key type: CDS Hooks forbids 'none' and every HMAC algorithm."""


class TrustError(DosingError):
    """The trust file cannot be used."""


class Unauthorized(Exception):
    """A request that is not authenticated; the message says why (no token values in it)."""


@attrs.frozen
class TrustedKey:
    issuer: str
    kid: str
    key: Any
    algorithms: tuple[str, ...]


def _algorithms(jwk: dict[str, Any], where: str) -> tuple[str, ...]:
    kty = jwk.get("kty")
    kind = f"{kty}:{jwk.get('crv')}" if kty in ("EC", "OKP") else str(kty)
    allowed = _ALGORITHMS.get(kind)
    if allowed is None:
        raise TrustError(
            f"{where}: a key of type {kind} is not accepted; CDS Hooks tokens are signed with "
            "an EC, RSA or Ed25519 key (never a shared secret)"
        )
    if "alg" in jwk:
        if jwk["alg"] not in allowed:
            raise TrustError(f"{where}: alg {jwk['alg']} does not fit a {kind} key")
        return (jwk["alg"],)
    return allowed


@attrs.frozen
class Trust:
    """The configured issuers and their public keys, by (issuer, kid)."""

    keys: dict[tuple[str, str], TrustedKey]
    by_kid: dict[str, list[TrustedKey]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        by_kid: dict[str, list[TrustedKey]] = {}
        for key in self.keys.values():
            by_kid.setdefault(key.kid, []).append(key)
        object.__setattr__(self, "by_kid", by_kid)


def load_trust(path: Path) -> Trust:
    """Read the trust file: {issuer: JWK Set}. Private keys in it are refused."""
    from dosing.core.strict_json import read_json

    try:
        data = path.read_bytes()
    except OSError as error:
        raise TrustError(f"cannot read the trust file {path}: {error.strerror}") from None
    document = read_json(data, str(path))
    if not isinstance(document, dict) or not document:
        raise TrustError(f'{path}: expected an object {{issuer: {{"keys": [JWK, ...]}}}}')
    keys: dict[tuple[str, str], TrustedKey] = {}
    for issuer, key_set in document.items():
        found = key_set.get("keys") if isinstance(key_set, dict) else None
        if not isinstance(found, list) or not found:
            raise TrustError(f'{path}: {issuer}: expected a JWK Set, {{"keys": [...]}}')
        for index, jwk in enumerate(found):
            where = f"{path}: {issuer}: keys[{index}]"
            if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
                raise TrustError(f"{where}: a key needs its kid (the token header names it)")
            if "d" in jwk:
                raise TrustError(f"{where}: a private key; give the public key only")
            algorithms = _algorithms(jwk, where)
            try:
                key = jwt.PyJWK(_json_safe(jwk), algorithm=algorithms[0]).key
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError) as error:
                raise TrustError(f"{where}: not a usable key ({error})") from None
            keys[(issuer, jwk["kid"])] = TrustedKey(issuer, jwk["kid"], key, algorithms)
    return Trust(keys)


def _json_safe(value: Any) -> Any:
    """The JWK with any Decimal (from strict JSON) as a plain number, as PyJWT expects."""
    return json.loads(json.dumps(value, default=str))


@attrs.define
class Authenticator:
    """Checks bearer tokens; remembers token ids against replay."""

    trust: Trust
    seen: dict[str, float] = attrs.Factory(dict)

    def check(self, authorization: str | None, audiences: Iterable[str]) -> dict[str, Any]:
        """The token's claims, or Unauthorized saying why (never echoing the token)."""
        if not authorization:
            raise Unauthorized("no Authorization header; expected Bearer and a signed JWT")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header is not 'Bearer <JWT>'")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not a JWT") from None
        if header.get("typ") != "JWT":
            raise Unauthorized("the token header must say typ JWT")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Unauthorized("the token header names no key (kid)")
        candidates = self.trust.by_kid.get(kid, [])
        if len(candidates) > 1:  # two issuers name a key alike: the token's iss chooses
            try:
                issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
            except jwt.PyJWTError:
                raise Unauthorized("the bearer token is not a JWT") from None
            candidates = [key for key in candidates if key.issuer == issuer]
        if not candidates:
            raise Unauthorized("the token's issuer and key (iss, kid) are not trusted here")
        trusted = candidates[0]
        if header.get("alg") not in trusted.algorithms:
            raise Unauthorized("the token's algorithm is not accepted for this key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                trusted.key,
                algorithms=list(trusted.algorithms),
                audience=list(audiences),
                issuer=trusted.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token's aud is not this endpoint's URL") from None
        except jwt.MissingRequiredClaimError as error:
            raise Unauthorized(f"the token lacks the {error.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token's signature does not verify") from None
        except jwt.PyJWTError as error:
            raise Unauthorized(f"the token is not valid ({type(error).__name__})") from None
        self._once(str(claims["jti"]), float(claims["exp"]))
        return claims

    def _once(self, jti: str, expires: float) -> None:
        now = time.time()
        if jti in self.seen and self.seen[jti] + LEEWAY_SECONDS >= now:
            raise Unauthorized("the token was used before (its jti is spent)")
        if len(self.seen) >= MAX_REMEMBERED:
            self.seen = {
                key: when for key, when in self.seen.items() if when + LEEWAY_SECONDS >= now
            }
            if len(self.seen) >= MAX_REMEMBERED:
                raise Unauthorized("too many live tokens; try again shortly")
        self.seen[jti] = expires

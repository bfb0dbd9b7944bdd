"""SMART Backend Services: system-to-system authentication for the FHIR API, apart from user sessions.

A client (``BackendClient``) is registered with the public keys of its key pair as a JSON Web Key
Set and the scopes it may ever hold. To get an access token it POSTs to the token URL a JWT it signed
(RS384 or ES384, header ``kid`` naming one of its keys) with ``iss`` = ``sub`` = its client id,
``aud`` = the token URL, ``exp`` at most five minutes ahead and a ``jti`` it never used before
(kept until ``exp``: a replay is refused). The token is opaque and short-lived; only its SHA-256 is
stored. Signatures are checked by PyJWT with ``cryptography``.

Scopes follow SMART v2 (``system/Patient.rs``: read and search; ``c``, ``u``, ``d`` for writes;
``*`` for every type), with the v1 forms ``read`` (= ``rs``), ``write`` (= ``cud``) and ``*``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from interop.models import AccessToken, BackendClient, ClientAssertion
from portal import audit
from portal.models import User
from portal.vocabulary import Resource

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# What SMART Backend Services requires servers to accept; the key type each one needs.
ALGORITHMS = {"RS384": "RSA", "ES384": "EC"}
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)
MIN_RSA_BITS = 2048
CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PERMISSIONS = "cruds"
_SCOPE = re.compile(r"^system/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*|c?r?u?d?s?)$")


class OAuthError(Exception):
    """A refused token request: an OAuth 2.0 error code (RFC 6749 section 5.2) and a description that
    names no value from the request. ``reason`` is the audit row's machine reason."""

    def __init__(self, error: str, description: str, reason: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.reason = reason
        self.status = status


class KeySetError(ValueError):
    """A key set that cannot be registered (private key, weak key, unsupported algorithm, no kid)."""


# --- Scopes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    resource_type: str  # a FHIR type, or "*"
    permissions: frozenset[str]

    def text(self) -> str:
        return f"system/{self.resource_type}.{''.join(p for p in PERMISSIONS if p in self.permissions)}"


def parse_scope(text: str) -> Scope:
    """``system/Patient.rs`` → Scope; ValueError for anything else (``patient/`` and ``user/``
    scopes are for apps acting for a person, not for backend services)."""
    match = _SCOPE.match(text)
    if not match or not match.group(2):
        raise ValueError("not a system scope")
    kind, perms = match.group(1), match.group(2)
    if perms == "read":
        perms = "rs"
    elif perms == "write":
        perms = "cud"
    elif perms == "*":
        perms = PERMISSIONS
    return Scope(kind, frozenset(perms))


def parse_scopes(text: str) -> list[Scope]:
    return [parse_scope(item) for item in text.split()]


def allows(scopes: list[Scope], resource_type: str, permission: str) -> bool:
    return any(s.resource_type in {"*", resource_type} and permission in s.permissions for s in scopes)


def covers(allowed: list[Scope], wanted: Scope) -> bool:
    """Whether every permission ``wanted`` asks for is held by some allowed scope."""
    if wanted.resource_type == "*":
        held = set().union(*(s.permissions for s in allowed if s.resource_type == "*"))
    else:
        held = set().union(*(s.permissions for s in allowed if s.resource_type in {"*", wanted.resource_type}))
    return wanted.permissions <= held


# --- Keys -----------------------------------------------------------------------------------------


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint of a public key (base64url SHA-256 of its required members)."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    body = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(body.encode()).digest()).rstrip(b"=").decode()


def _checked_key(jwk: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(jwk, dict) or jwk.get("kty") not in {"RSA", "EC"}:
        raise KeySetError("each key must be an RSA or EC JSON Web Key")
    if "d" in jwk or "p" in jwk:
        raise KeySetError("a private key was given: register the public key only")
    alg = jwk.get("alg")
    if alg is not None and alg not in ALGORITHMS:
        raise KeySetError(f"key algorithm must be one of {', '.join(ALGORITHMS)}")
    try:
        if jwk["kty"] == "RSA":
            key: Any = RSAAlgorithm.from_jwk(jwk)
            if key.key_size < MIN_RSA_BITS:
                raise KeySetError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
        else:
            if jwk.get("crv") != "P-384":
                raise KeySetError("EC keys must be on the P-384 curve (ES384)")
            ECAlgorithm.from_jwk(jwk)
    except (jwt.InvalidKeyError, ValueError, KeyError, TypeError) as error:
        if isinstance(error, KeySetError):
            raise
        raise KeySetError("a key could not be read") from None
    public = {
        name: value for name, value in jwk.items() if name in {"kty", "kid", "alg", "use", "n", "e", "crv", "x", "y"}
    }
    public.setdefault("kid", thumbprint(public))
    public.setdefault("alg", "RS384" if jwk["kty"] == "RSA" else "ES384")
    return public


def key_set(data: Any) -> dict[str, Any]:
    """A registrable JWKS from a JWKS or a single JWK: public keys only, each with a ``kid`` (its
    thumbprint if it had none) and its ``alg``; kids unique."""
    keys = data.get("keys") if isinstance(data, dict) and "keys" in data else [data]
    if not isinstance(keys, list) or not keys:
        raise KeySetError("the key set holds no key")
    checked = [_checked_key(item) for item in keys]
    kids = [item["kid"] for item in checked]
    if len(set(kids)) != len(kids):
        raise KeySetError("two keys share a kid")
    return {"keys": checked}


def key_from_pem(pem: bytes, kid: str | None = None) -> dict[str, Any]:
    """A JWK from a PEM public key (RSA, or EC P-384)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except ValueError:
        raise KeySetError("not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(key))
    elif isinstance(key, ec.EllipticCurvePublicKey):
        jwk = json.loads(ECAlgorithm.to_jwk(key))
    else:
        raise KeySetError("the key must be RSA or EC P-384")
    if kid:
        jwk["kid"] = kid
    return _checked_key(jwk)


# --- Clients --------------------------------------------------------------------------------------


def client_register(*, client_id: str, name: str, jwks: dict[str, Any], scopes: str) -> BackendClient:
    """Register a backend client with its public keys and the scopes it may request (ValueError for
    a bad client id, key set or scope)."""
    if not CLIENT_ID.match(client_id):
        raise ValueError("client id: letters, digits, '.', '_' and '-', at most 64")
    if BackendClient.objects.filter(client_id__iexact=client_id).exists():
        raise ValueError("a client with this id (in any letter case) is registered already")
    parsed = parse_scopes(scopes)
    if not parsed:
        raise ValueError("at least one scope is needed")
    checked = key_set(jwks)
    with transaction.atomic():
        account = User.objects.create_user(
            f"{client_id.lower()}@fhir-client.invalid", None, display_name=f"FHIR client {name}"[:150], is_active=False
        )
        client = BackendClient.objects.create(
            client_id=client_id,
            name=name,
            jwks=checked,
            scopes=" ".join(s.text() for s in parsed),
            account=account,
        )
        audit.record(
            actor=account, action=audit.Action.CREATE, entity_type=Resource.BACKEND_CLIENT, entity_id=client.pk
        )
    return client


def client_set_keys(*, client: BackendClient, jwks: dict[str, Any]) -> BackendClient:
    """Replace a client's registered keys (key rotation: register the new set, old and new keys)."""
    with transaction.atomic():
        client.jwks = key_set(jwks)
        client.save(update_fields=["jwks"])
        audit.record(
            actor=client.account,
            action=audit.Action.UPDATE,
            entity_type=Resource.BACKEND_CLIENT,
            entity_id=client.pk,
            reason="keys",
        )
    return client


def client_revoke(*, client: BackendClient) -> BackendClient:
    """Revoke a client: no new token, and every token it holds stops working at once."""
    with transaction.atomic():
        client.active = False
        client.revoked_at = timezone.now()
        client.save(update_fields=["active", "revoked_at"])
        AccessToken.objects.filter(client=client).delete()
        audit.record(
            actor=client.account,
            action=audit.Action.DELETE,
            entity_type=Resource.BACKEND_CLIENT,
            entity_id=client.pk,
            reason="revoked",
        )
    return client


# --- The token endpoint ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    token: str
    scopes: str
    expires_in: int


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _unverified_client(assertion: str) -> tuple[BackendClient | None, dict[str, Any]]:
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise OAuthError("invalid_client", "The client assertion is not a JWT.", "assertion_unreadable") from None
    iss = claims.get("iss")
    client = (
        BackendClient.objects.select_related("account").filter(client_id=iss).first() if isinstance(iss, str) else None
    )
    return client, header


def _verified_claims(client: BackendClient, header: dict[str, Any], assertion: str, audience: str) -> dict[str, Any]:
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ALGORITHMS:
        raise OAuthError("invalid_client", "The assertion must be signed with RS384 or ES384.", "assertion_alg")
    key = next((k for k in (client.jwks or {}).get("keys", []) if k.get("kid") == kid), None) if kid else None
    if key is None:
        raise OAuthError("invalid_client", "No registered key has the assertion's kid.", "assertion_kid")
    if key["kty"] != ALGORITHMS[alg] or key.get("alg", alg) != alg:
        raise OAuthError("invalid_client", "The assertion's algorithm does not match its key.", "assertion_alg")
    try:
        public = jwt.PyJWK(key, algorithm=alg)
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key=public,
            algorithms=[alg],
            audience=audience,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.InvalidSignatureError:
        raise OAuthError(
            "invalid_client", "The assertion's signature does not verify.", "assertion_signature"
        ) from None
    except jwt.ExpiredSignatureError:
        raise OAuthError("invalid_client", "The assertion has expired.", "assertion_expired") from None
    except jwt.InvalidAudienceError:
        raise OAuthError("invalid_client", "The assertion's aud must be the token URL.", "assertion_aud") from None
    except jwt.MissingRequiredClaimError as error:
        raise OAuthError(
            "invalid_client", f"The assertion lacks the {error.claim} claim.", "assertion_claims"
        ) from None
    except jwt.PyJWTError:
        raise OAuthError("invalid_client", "The assertion is not valid.", "assertion_invalid") from None
    if claims["sub"] != client.client_id:
        raise OAuthError("invalid_client", "The assertion's iss and sub must both be the client id.", "assertion_sub")
    if not isinstance(claims["jti"], str) or not claims["jti"] or len(claims["jti"]) > 255:
        raise OAuthError(
            "invalid_client", "The assertion's jti must be a string of 1 to 255 characters.", "assertion_jti"
        )
    return claims


def _expiry(claims: dict[str, Any], now: datetime) -> datetime:
    expires = datetime.fromtimestamp(int(claims["exp"]), tz=now.tzinfo)
    if expires > now + MAX_ASSERTION_LIFETIME:
        raise OAuthError(
            "invalid_client", "The assertion's exp must be at most five minutes ahead.", "assertion_exp_too_far"
        )
    return expires


def _use_once(client: BackendClient, jti: str, expires: datetime, now: datetime) -> None:
    ClientAssertion.objects.filter(expires_at__lt=now).delete()
    try:
        with transaction.atomic():
            ClientAssertion.objects.create(client=client, jti=jti, expires_at=expires)
    except IntegrityError:
        raise OAuthError("invalid_client", "This assertion (its jti) was used already.", "assertion_replay") from None


def _granted(client: BackendClient, requested: str) -> str:
    try:
        wanted = parse_scopes(requested)
    except ValueError:
        raise OAuthError(
            "invalid_scope", "Scopes must be SMART system scopes (system/Type.rs).", "scope_syntax"
        ) from None
    if not wanted:
        raise OAuthError("invalid_scope", "The scope parameter is required.", "scope_missing")
    allowed = parse_scopes(client.scopes)
    if not all(covers(allowed, scope) for scope in wanted):
        raise OAuthError("invalid_scope", "A requested scope is not granted to this client.", "scope_not_allowed")
    return " ".join(dict.fromkeys(scope.text() for scope in wanted))


def token_issue(*, form: dict[str, str], token_url: str) -> Issued:
    """Check a client-credentials request (module docstring) and issue an access token, or raise
    ``OAuthError``. Every answer is audited: a known client's as its own row, an unknown client's
    as a coalesced unauthenticated refusal (by the caller)."""
    if form.get("grant_type") != "client_credentials":
        raise OAuthError("unsupported_grant_type", "grant_type must be client_credentials.", "grant_type")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}.", "assertion_type")
    assertion = form.get("client_assertion") or ""
    if not assertion:
        raise OAuthError("invalid_client", "client_assertion is required.", "assertion_missing")
    client, header = _unverified_client(assertion)
    if client is None:
        raise OAuthError("invalid_client", "Unknown client.", "unknown_client")
    now = timezone.now()
    try:
        if not client.active:
            raise OAuthError("invalid_client", "This client is revoked.", "client_revoked")
        claims = _verified_claims(client, header, assertion, token_url)
        expires = _expiry(claims, now)
        scopes = _granted(client, form.get("scope") or "")
        _use_once(client, claims["jti"], expires, now)
        token = secrets.token_urlsafe(32)
        lifetime = int(settings.PORTAL_FHIR_TOKEN_SECONDS)
        with transaction.atomic():
            AccessToken.objects.filter(expires_at__lt=now).delete()
            AccessToken.objects.create(
                client=client, token_hash=_hash(token), scopes=scopes, expires_at=now + timedelta(seconds=lifetime)
            )
            audit.record(
                actor=client.account,
                action=audit.Action.LOGIN,
                entity_type=Resource.BACKEND_CLIENT,
                entity_id=client.pk,
                reason="smart_token",
            )
    except OAuthError as error:
        audit.record(
            actor=client.account,
            action=audit.Action.DENY,
            entity_type=Resource.BACKEND_CLIENT,
            entity_id=client.pk,
            outcome=audit.Outcome.DENIED,
            reason=error.reason,
        )
        raise
    return Issued(token=token, scopes=scopes, expires_in=lifetime)


# --- Bearer tokens on the FHIR API -----------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """The backend client a request's access token belongs to, and the scopes that token holds."""

    client: BackendClient
    scopes: list[Scope]

    @property
    def actor(self) -> User:
        return self.client.account

    def may(self, resource_type: str, permission: str) -> bool:
        return allows(self.scopes, resource_type, permission)


def caller_from_token(token: str) -> Caller | None:
    """The caller an unexpired token of an active client belongs to, else None."""
    if not token or len(token) > 200:
        return None
    found = (
        AccessToken.objects.select_related("client__account")
        .filter(token_hash=_hash(token), expires_at__gt=timezone.now(), client__active=True)
        .first()
    )
    if found is None:
        return None
    return Caller(client=found.client, scopes=parse_scopes(found.scopes))

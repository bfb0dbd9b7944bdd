"""Key pairs, signed client assertions and token requests for the FHIR API's tests."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import Client
from django.utils import timezone
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from interop import smart
from interop.models import BackendClient

TOKEN_URL = "http://testserver/fhir/R4/token"


@dataclass
class KeyPair:
    private: Any
    alg: str
    kid: str

    def jwk(self) -> dict[str, Any]:
        to_jwk = RSAAlgorithm.to_jwk if self.alg == "RS384" else ECAlgorithm.to_jwk
        data: dict[str, Any] = json.loads(to_jwk(self.private.public_key()))
        data["kid"] = self.kid
        return data


def rsa_key(kid: str = "rsa-1") -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS384", kid)


def ec_key(kid: str = "ec-1") -> KeyPair:
    return KeyPair(ec.generate_private_key(ec.SECP384R1()), "ES384", kid)


def register(client_id: str, key: KeyPair, scopes: str = "system/*.rs system/*.cud") -> BackendClient:
    return smart.client_register(
        client_id=client_id, name="Integration engine", jwks={"keys": [key.jwk()]}, scopes=scopes
    )


def assertion(
    client_id: str,
    key: KeyPair,
    *,
    aud: str = TOKEN_URL,
    lifetime: int = 240,
    jti: str | None = None,
    sub: str | None = None,
    kid: str | None = None,
) -> str:
    now = int(timezone.now().timestamp())
    claims = {
        "iss": client_id,
        "sub": sub or client_id,
        "aud": aud,
        "exp": now + lifetime,
        "jti": jti or uuid.uuid4().hex,
    }
    return jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": kid or key.kid})


def token_request(http: Client, signed: str, scope: str = "system/*.rs") -> Any:
    return http.post(
        "/fhir/R4/token",
        {
            "grant_type": "client_credentials",
            "client_assertion_type": smart.ASSERTION_TYPE,
            "client_assertion": signed,
            "scope": scope,
        },
    )


def access_token(client_id: str, key: KeyPair, scope: str = "system/*.rs") -> str:
    response = token_request(Client(enforce_csrf_checks=True), assertion(client_id, key), scope)
    assert response.status_code == 200, response.content
    return str(response.json()["access_token"])


def bearer(token: str) -> Client:
    return Client(enforce_csrf_checks=True, headers={"Authorization": f"Bearer {token}"})

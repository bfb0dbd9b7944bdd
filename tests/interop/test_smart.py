"""SMART Backend Services: the token endpoint refuses every bad assertion with an OAuth 2.0 error,
audited; tokens are opaque, stored hashed, short-lived and revocable; backend tokens and user
sessions never stand in for each other."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from interop.models import AccessToken, BackendClient, ClientAssertion
from portal import refusals
from portal.models import AuditEvent
from tests.conftest import World
from tests.interop.smart_keys import (
    KeyPair,
    access_token,
    assertion,
    bearer,
    ec_key,
    register,
    rsa_key,
    token_request,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def key() -> KeyPair:
    return rsa_key()


@pytest.fixture
def engine(key: KeyPair) -> BackendClient:
    return register("engine", key, scopes="system/*.rs system/Patient.cud")


def _refused(response: Any, error: str, reason: str, client: BackendClient) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == error and body["error_description"]
    assert "no-store" in response["Cache-Control"]
    assert not AccessToken.objects.exists()
    row = AuditEvent.objects.filter(actor_id=client.account_id, action="deny").latest("seq")
    assert (row.entity_type, row.outcome, row.reason) == ("BackendClient", "denied", reason)


@pytest.mark.parametrize("make_key", [rsa_key, ec_key], ids=["RS384", "ES384"])
def test_a_signed_assertion_gets_a_short_lived_opaque_token(make_key: Any) -> None:
    key = make_key()
    client = register("engine", key)
    response = token_request(Client(), assertion("engine", key), "system/Patient.rs system/Appointment.r")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["scope"] == "system/Patient.rs system/Appointment.r"
    assert "no-store" in response["Cache-Control"]
    stored = AccessToken.objects.get()
    # Only the token's hash is kept.
    assert stored.token_hash == hashlib.sha256(body["access_token"].encode()).hexdigest()
    assert body["access_token"] not in stored.token_hash
    assert stored.expires_at == NOW + timedelta(seconds=300)
    row = AuditEvent.objects.get(actor_id=client.account_id, action="login")
    assert (row.entity_type, row.entity_id, row.reason) == ("BackendClient", str(client.pk), "smart_token")


def test_an_assertion_signed_with_another_key_is_refused(engine: BackendClient) -> None:
    impostor = rsa_key(kid="rsa-1")  # the registered kid, another key
    _refused(token_request(Client(), assertion("engine", impostor)), "invalid_client", "assertion_signature", engine)


def test_an_unknown_kid_is_refused(engine: BackendClient, key: KeyPair) -> None:
    _refused(token_request(Client(), assertion("engine", key, kid="other")), "invalid_client", "assertion_kid", engine)


def test_an_expired_assertion_is_refused(engine: BackendClient, key: KeyPair) -> None:
    _refused(
        token_request(Client(), assertion("engine", key, lifetime=-5)), "invalid_client", "assertion_expired", engine
    )


def test_an_assertion_valid_for_more_than_five_minutes_is_refused(engine: BackendClient, key: KeyPair) -> None:
    signed = assertion("engine", key, lifetime=301)
    _refused(token_request(Client(), signed), "invalid_client", "assertion_exp_too_far", engine)
    assert token_request(Client(), assertion("engine", key, lifetime=300)).status_code == 200


def test_a_replayed_jti_is_refused_until_the_assertion_expires(engine: BackendClient, key: KeyPair) -> None:
    signed = assertion("engine", key, jti="once")
    assert token_request(Client(), signed).status_code == 200
    AccessToken.objects.all().delete()
    _refused(token_request(Client(), signed), "invalid_client", "assertion_replay", engine)
    # Another assertion with the same jti is refused too while the first one is unexpired.
    _refused(
        token_request(Client(), assertion("engine", key, jti="once")), "invalid_client", "assertion_replay", engine
    )
    assert ClientAssertion.objects.filter(client=engine, jti="once").count() == 1


def test_a_wrong_audience_is_refused(engine: BackendClient, key: KeyPair) -> None:
    signed = assertion("engine", key, aud="http://testserver/other/token")
    _refused(token_request(Client(), signed), "invalid_client", "assertion_aud", engine)


def test_sub_must_be_the_client_id(engine: BackendClient, key: KeyPair) -> None:
    signed = assertion("engine", key, sub="someone-else")
    _refused(token_request(Client(), signed), "invalid_client", "assertion_sub", engine)


def test_scopes_beyond_the_clients_are_refused(engine: BackendClient, key: KeyPair) -> None:
    # The client holds system/*.rs and system/Patient.cud: no deletes of appointments, no wildcard writes.
    for scope in ("system/Appointment.d", "system/*.c", "user/Patient.rs", "system/Patient.x"):
        response = token_request(Client(), assertion("engine", key), scope)
        assert response.status_code == 400 and response.json()["error"] == "invalid_scope", scope
    _refused(token_request(Client(), assertion("engine", key), ""), "invalid_scope", "scope_missing", engine)
    ok = token_request(Client(), assertion("engine", key), "system/Patient.cruds system/Appointment.read")
    assert ok.status_code == 200 and ok.json()["scope"] == "system/Patient.cruds system/Appointment.rs"


def test_a_revoked_client_gets_no_token_and_its_tokens_stop_working(engine: BackendClient, key: KeyPair) -> None:
    token = access_token("engine", key)
    assert bearer(token).get("/fhir/R4/$changes").status_code == 200
    call_command("fhir_client", "revoke", "engine", stdout=io.StringIO())
    assert bearer(token).get("/fhir/R4/$changes").status_code == 401
    _refused(token_request(Client(), assertion("engine", key)), "invalid_client", "client_revoked", engine)


def test_an_expired_access_token_is_refused(engine: BackendClient, key: KeyPair) -> None:
    token = access_token("engine", key)
    with time_machine.travel(NOW + timedelta(seconds=299), tick=False):
        assert bearer(token).get("/fhir/R4/$changes").status_code == 200
    with time_machine.travel(NOW + timedelta(seconds=301), tick=False):
        response = bearer(token).get("/fhir/R4/$changes")
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/fhir+json")
    assert response.json()["issue"][0]["code"] == "login"
    assert "Bearer" in response["WWW-Authenticate"]


def test_an_unknown_client_and_a_missing_token_are_refusals_counted_in_the_trail(engine: BackendClient) -> None:
    stranger = rsa_key()
    response = token_request(Client(), assertion("nobody", stranger))
    assert response.status_code == 400 and response.json()["error"] == "invalid_client"
    assert Client().get("/fhir/R4/$changes").status_code == 401
    assert bearer("made-up").get("/fhir/R4/$changes").status_code == 401
    refusals.flush(everything=True)
    reasons = set(AuditEvent.objects.filter(action="deny", actor_id=None).values_list("reason", flat=True))
    assert {"fhir_unknown_client", "fhir_token_missing", "fhir_token_invalid"} <= reasons


def test_the_grant_type_and_assertion_type_are_checked(engine: BackendClient, key: KeyPair) -> None:
    http = Client()
    signed = assertion("engine", key)
    wrong_grant = http.post("/fhir/R4/token", {"grant_type": "password", "client_assertion": signed})
    assert wrong_grant.status_code == 400 and wrong_grant.json()["error"] == "unsupported_grant_type"
    wrong_type = http.post("/fhir/R4/token", {"grant_type": "client_credentials", "client_assertion": signed})
    assert wrong_type.status_code == 400 and wrong_type.json()["error"] == "invalid_client"
    assert http.get("/fhir/R4/token").status_code == 405


@override_settings(PORTAL_FHIR_TOKEN_RATE="3/m")
def test_the_token_endpoint_is_rate_limited(engine: BackendClient, key: KeyPair) -> None:
    statuses = [token_request(Client(), assertion("engine", key)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_missing_scope_is_403_and_audited(key: KeyPair) -> None:
    client = register("writer", key, scopes="system/Patient.c")
    token = access_token("writer", key, "system/Patient.c")
    response = bearer(token).get("/fhir/R4/$changes")
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "forbidden"
    row = AuditEvent.objects.get(actor_id=client.account_id, action="deny")
    assert (row.outcome, row.reason) == ("denied", "fhir_scope")


def test_user_sessions_do_not_open_the_fhir_api_and_backend_tokens_do_not_open_the_portal_api(
    world: World, engine: BackendClient, key: KeyPair
) -> None:
    # An administrator's app token and browser session: refused by the FHIR API.
    assert world.client("admin").get("/fhir/R4/$changes").status_code == 401
    browser = Client()
    browser.force_login(world.admin)
    assert browser.get("/fhir/R4/$changes").status_code == 401
    signed_in = Client()
    signed_in.force_login(world.clinician)
    session = signed_in.session.session_key
    assert session and Client(headers={"X-Session-Token": session}).get("/api/v1/me").status_code == 200
    assert bearer(session).get("/fhir/R4/$changes").status_code == 401
    # A backend token: refused by the portal's own API, whichever header carries it.
    token = access_token("engine", key)
    assert bearer(token).get("/api/v1/me").status_code == 401
    assert Client(headers={"X-Session-Token": token}).get("/api/v1/me").status_code == 401
    # The client's account can never sign in.
    assert not engine.account.is_active and not engine.account.has_usable_password()


def test_metadata_and_smart_configuration_are_public() -> None:
    metadata = Client().get("/fhir/R4/metadata")
    assert metadata.status_code == 200
    assert metadata["Content-Type"].startswith("application/fhir+json")
    body = metadata.json()
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    CapabilityStatement.model_validate(body)
    uris = body["rest"][0]["security"]["extension"][0]["extension"]
    assert {"url": "token", "valueUri": "http://testserver/fhir/R4/token"} in uris
    config = Client().get("/fhir/R4/.well-known/smart-configuration").json()
    assert config["token_endpoint"] == "http://testserver/fhir/R4/token"
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}


# --- The management command ------------------------------------------------------------------------


def test_register_from_pem_and_jwks_files_rotate_and_list(tmp_path: Path) -> None:
    rsa_pair, ec = rsa_key(), ec_key()
    pem = tmp_path / "engine.pem"
    pem.write_bytes(
        rsa_pair.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    out = io.StringIO()
    call_command(
        "fhir_client",
        "register",
        "engine",
        "--name",
        "Engine",
        "--keys",
        str(pem),
        "--kid",
        "rsa-1",
        "--scope",
        "system/*.rs",
        stdout=out,
    )
    assert access_token("engine", rsa_pair)
    jwks = tmp_path / "ec.json"
    jwks.write_text(json.dumps({"keys": [ec.jwk()]}))
    call_command("fhir_client", "keys", "engine", "--keys", str(jwks), stdout=out)
    assert access_token("engine", ec)
    assert token_request(Client(), assertion("engine", rsa_pair)).json()["error"] == "invalid_client"
    with pytest.raises(CommandError, match="registered already"):
        call_command("fhir_client", "register", "ENGINE", "--name", "E", "--keys", str(jwks), "--scope", "system/*.rs")
    call_command("fhir_client", "list", stdout=out)
    assert "engine\tactive\tsystem/*.rs\tkids=ec-1" in out.getvalue()


def test_register_refuses_private_keys_weak_keys_and_bad_scopes(tmp_path: Path) -> None:
    key = rsa_key()
    private = tmp_path / "private.json"
    jwk = key.jwk() | {"d": "secret"}
    private.write_text(json.dumps(jwk))
    with pytest.raises(CommandError, match="private key"):
        call_command("fhir_client", "register", "a", "--name", "A", "--keys", str(private), "--scope", "system/*.rs")
    public = tmp_path / "public.json"
    public.write_text(json.dumps(key.jwk()))
    with pytest.raises(CommandError, match="scope"):
        call_command("fhir_client", "register", "a", "--name", "A", "--keys", str(public), "--scope", "patient/*.rs")
    weak = KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=1024), "RS384", "weak")
    public.write_text(json.dumps(weak.jwk()))
    with pytest.raises(CommandError, match="2048"):
        call_command("fhir_client", "register", "a", "--name", "A", "--keys", str(public), "--scope", "system/*.rs")
    assert not BackendClient.objects.exists()

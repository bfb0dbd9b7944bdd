"""``manage.py fhir_client register|keys|revoke|list``: the FHIR API's backend clients (SMART Backend
Services). Keys are public keys: a JWKS or a single JWK (``.json``), or a PEM public key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from interop import smart
from interop.models import BackendClient


def read_keys(path: str, kid: str | None) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise CommandError(f"{path}: no such file")
    raw = file.read_bytes()
    try:
        if raw.lstrip().startswith(b"{"):
            if kid:
                raise CommandError("--kid applies to a PEM key only; a JWK names its own kid")
            return smart.key_set(json.loads(raw))
        return {"keys": [smart.key_from_pem(raw, kid)]}
    except (ValueError, smart.KeySetError) as error:
        raise CommandError(f"{path}: {error}") from None


class Command(BaseCommand):
    help = "Register, re-key, revoke or list the FHIR API's backend clients (SMART Backend Services)."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True)
        register = commands.add_parser("register", help="Register a client with its public key(s) and scopes.")
        register.add_argument("client_id")
        register.add_argument("--name", required=True)
        register.add_argument("--keys", required=True, help="JWKS / JWK (.json) or PEM public key file")
        register.add_argument("--kid", help="the key id of a PEM key (default: its RFC 7638 thumbprint)")
        register.add_argument(
            "--scope", required=True, help='space-separated SMART system scopes, e.g. "system/*.rs system/*.cud"'
        )
        keys = commands.add_parser("keys", help="Replace a client's public keys (rotation).")
        keys.add_argument("client_id")
        keys.add_argument("--keys", required=True)
        keys.add_argument("--kid")
        revoke = commands.add_parser("revoke", help="Revoke a client: its tokens stop working at once.")
        revoke.add_argument("client_id")
        commands.add_parser("list", help="List clients, their scopes, key ids and state.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            for client in BackendClient.objects.order_by("client_id"):
                kids = ",".join(key.get("kid", "") for key in client.jwks.get("keys", []))
                state = "active" if client.active else "revoked"
                self.stdout.write(f"{client.client_id}\t{state}\t{client.scopes}\tkids={kids}\t{client.name}")
            return
        if action == "register":
            jwks = read_keys(options["keys"], options.get("kid"))
            try:
                client = smart.client_register(
                    client_id=options["client_id"], name=options["name"], jwks=jwks, scopes=options["scope"]
                )
            except (ValueError, smart.KeySetError) as error:
                raise CommandError(str(error)) from None
            self.stdout.write(f"Registered {client.client_id} with scopes {client.scopes}.")
            return
        found = BackendClient.objects.select_related("account").filter(client_id=options["client_id"]).first()
        if found is None:
            raise CommandError("No such client.")
        if action == "keys":
            smart.client_set_keys(client=found, jwks=read_keys(options["keys"], options.get("kid")))
            self.stdout.write(f"Keys of {found.client_id} replaced.")
        else:
            smart.client_revoke(client=found)
            self.stdout.write(f"Revoked {found.client_id}; its access tokens no longer work.")

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import keys
from portal.crypto import keyring


class Command(BaseCommand):
    help = "Retire an old encryption key once no stored value uses it any more (after rotate_keys)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kid", help="The id of the key to retire.")

    def handle(self, *args: Any, **options: Any) -> None:
        kid: str = options["kid"]
        ring = keyring()
        if kid not in ring.keys:
            raise CommandError(f"No encryption key with id {kid!r} is configured.")
        if kid == ring.primary:
            raise CommandError(
                f"Key {kid!r} is the primary key, which encrypts every write: add a new primary key and run "
                "rotate_keys first."
            )
        in_use = keys.key_in_use(kid)
        if in_use:
            raise CommandError(
                f"Key {kid!r} still encrypts {in_use} stored value(s); run rotate_keys (again) until none remain."
            )
        if keys.uses_key_file():
            keys.remove_key_from_key_file(kid)
            self.stdout.write(
                self.style.SUCCESS(f"Removed key {kid!r} from the key file; restart the portal processes.")
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"No stored value uses key {kid!r}: it is safe to remove from PORTAL_ENCRYPTION_KEYS "
                    "(on every portal process, once all of them encrypt with the new primary key)."
                )
            )

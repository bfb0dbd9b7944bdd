from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import keys
from portal.crypto import keyring


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted value (PHI columns, TOTP secrets, recovery-code seeds) that is not "
        "under the primary (first) key, batch by batch while the portal keeps serving. Safe to stop and "
        "run again: each run picks up only what is still on an old key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Rows per transaction (default 500; smaller = shorter locks)."
        )
        parser.add_argument(
            "--new-key",
            action="store_true",
            help="Key-file mode only: add a new key to the key file as the primary key, then rotate to it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size: int = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        # Load the keys first: a lost key file or a bad key list stops here, before anything changes.
        keyring()
        if options["new_key"]:
            if not keys.uses_key_file():
                # The keys live in the environment of every portal process; only their deployment
                # can change them, and every process must hold the new key before rotation starts.
                raise CommandError(
                    "Keys come from PORTAL_ENCRYPTION_KEYS, which this command cannot change. Generate a key, "
                    "prepend it as 'newid:base64key,' to PORTAL_ENCRYPTION_KEYS on every portal process, restart "
                    "them, then run rotate_keys without --new-key."
                )
            kid = keys.add_key_to_key_file()
            self.stdout.write(f"Added key {kid!r} to the key file as the primary key.")
            self.stdout.write(
                self.style.WARNING(
                    "Portal processes started before this cannot read values re-encrypted under the new key "
                    "until they restart: restart them now."
                )
            )
        self.stdout.write(f"Rotating to key {keyring().primary!r} in batches of {batch_size}.")

        def progress(batch: keys.RotationBatch) -> None:
            done = sum(batch.totals.values())
            self.stdout.write(
                f"  {batch.model}: {batch.rows} row(s) in this batch, {done} value(s) re-encrypted so far"
            )

        try:
            totals = keys.rotate(batch_size=batch_size, on_batch=progress)
        except keys.RotationError as exc:
            raise CommandError(f"Rotation stopped: {exc} Batches already done stay done; run again to resume.") from exc
        for label, count in totals.items():
            self.stdout.write(f"{label}: {count} value(s) re-encrypted")
        remaining = keys.rows_on_old_keys()
        for label, count in remaining.items():
            self.stdout.write(f"{label}: {count} values remain on old keys")
        if any(remaining.values()):
            # A portal process that still encrypts with the old primary (not yet restarted) or that
            # saved a row it read before its batch writes old ciphertext back; another run moves it.
            self.stdout.write(self.style.WARNING("Some values are still on old keys: run rotate_keys again."))
        else:
            self.stdout.write(self.style.SUCCESS("Every value is on the primary key; old keys can be retired."))

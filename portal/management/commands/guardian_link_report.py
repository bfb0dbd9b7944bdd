from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.services import link_breaches, link_suspend_for_approval


class Command(BaseCommand):
    help = (
        "Report active guardian links that break the invitation and staff-as-parent rules (held by a staff "
        "account without a second staff member's approval, redeemed by the invitation's creator, or by an "
        "account that has not verified the invited address). Exit 1 if any. Names ids only, never people."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--suspend",
            action="store_true",
            help="send the staff-held ones back to pending_approval (audited) until a second staff member approves",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        breaches = link_breaches()
        suspended = 0
        for breach in breaches:
            self.stdout.write(
                f"link {breach.link_id} child {breach.child_id} guardian {breach.guardian_id}: "
                + ", ".join(breach.reasons)
            )
            if options["suspend"] and "staff_unapproved" in breach.reasons:
                suspended += int(link_suspend_for_approval(link_id=breach.link_id))
        self.stdout.write(f"{len(breaches)} links break the invitation and staff-as-parent rules.")
        if options["suspend"]:
            self.stdout.write(f"{suspended} links suspended until a second staff member approves them.")
        if breaches and not options["suspend"]:
            raise CommandError(f"{len(breaches)} guardian link(s) break the access rules.")

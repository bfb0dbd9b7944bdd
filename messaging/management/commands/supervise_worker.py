import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Keep `manage.py portal_worker` running: start it, and start it again whenever it exits "
        "(crash, kill, a locked database), with a short back-off. Stops the worker when stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--max-backoff", type=float, default=30.0, help="longest wait between restarts (s)")
        parser.add_argument("worker_args", nargs="*", help="extra arguments for portal_worker")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping = True
            if self.child is not None and self.child.poll() is None:
                self.child.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        manage = Path(settings.BASE_DIR) / "manage.py"
        command = [sys.executable, str(manage), "portal_worker", *options["worker_args"]]
        backoff = 1.0
        while not self.stopping:
            started = time.monotonic()
            self.child = subprocess.Popen(command)  # noqa: S603 - our own interpreter and manage.py
            code = self.child.wait()
            if self.stopping:
                break
            if time.monotonic() - started > 60:
                backoff = 1.0  # it ran a good while: this is a fresh failure, not a crash loop
            self.stderr.write(f"worker exited with {code}; restarting in {backoff:.0f} s")
            deadline = time.monotonic() + backoff
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.2)
            backoff = min(backoff * 2, options["max_backoff"])

"""Background tasks (django-tasks) of the threads: the escalation sweep. The notifications' own tasks
(sending, retries) live with them in ``messaging.notify``."""

from __future__ import annotations

from django_tasks import task

from messaging import handling


@task()
def escalate_overdue_threads() -> int:
    """Escalate every overdue thread to its pool lead (``manage.py escalate_overdue --enqueue``)."""
    return len(handling.thread_escalate_overdue())

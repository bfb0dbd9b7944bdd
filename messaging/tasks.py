"""Background tasks (django-tasks): notifications with retries, and the escalation sweep."""

from __future__ import annotations

from django_tasks import task

from messaging import notify


@task()
def deliver_notification(notification_id: str) -> str:
    """Send one notification; a failure schedules a retry with exponential backoff (see notify)."""
    return notify.deliver(notification_id)


@task()
def send_due_notifications() -> int:
    return notify.send_due()


@task()
def escalate_overdue_threads() -> int:
    """Escalate every overdue thread to its pool lead (``manage.py escalate_overdue --enqueue``)."""
    from messaging import services

    return len(services.thread_escalate_overdue())

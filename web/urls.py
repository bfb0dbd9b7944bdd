from django.urls import path

from web import account, care, family, groups, messenger, pwa, results, views

app_name = "web"

urlpatterns = [
    path("", care.home, name="home"),  # the care team's landing, or the family's
    path("sign-in/", views.sign_in, name="sign_in"),
    # Installing the app: the manifest, the service worker (scope "/") and its offline page (web/pwa.py).
    path("manifest.webmanifest", pwa.manifest, name="manifest"),
    path("sw.js", pwa.service_worker, name="service_worker"),
    path("offline/", pwa.offline, name="offline"),
    path("sign-in/code/", views.sign_in_code, name="sign_in_code"),
    path("sign-out/", views.sign_out, name="sign_out"),
    path("children/<uuid:child_id>/", views.child_today, name="today"),
    path("children/<uuid:child_id>/medicines/<uuid:plan_id>/doses/", views.dose_record, name="dose_record"),
    path("children/<uuid:child_id>/medicines/<uuid:plan_id>/refill/", views.refill_request, name="refill_request"),
    # The care team's queues and the peer groups (web/care.py, web/groups.py).
    path("care/refills/", care.refill_queue, name="care_refills"),
    path("care/children/<uuid:child_id>/refills/<uuid:refill_id>/", care.refill_decide, name="care_refill_decide"),
    path("care/coverage/", care.coverage_queue, name="care_coverage"),
    path(
        "care/children/<uuid:child_id>/coverage/<uuid:coverage_id>/", care.coverage_decide, name="care_coverage_decide"
    ),
    path("care/appointment-requests/", care.change_requests, name="care_changes"),
    path(
        "care/children/<uuid:child_id>/appointments/<uuid:appointment_id>/",
        care.change_answer,
        name="care_change_answer",
    ),
    path("groups/", groups.group_list, name="groups"),
    path("groups/<uuid:group_id>/", groups.group_page, name="group"),
    path("groups/<uuid:group_id>/join/", groups.group_join, name="group_join"),
    path("groups/<uuid:group_id>/posts/", groups.group_post, name="group_post"),
    path("groups/<uuid:group_id>/posts/<uuid:post_id>/report/", groups.group_report, name="group_report"),
    path("groups/<uuid:group_id>/moderation/", groups.moderation, name="group_moderation"),
    path("groups/<uuid:group_id>/posts/<uuid:post_id>/moderate/", groups.moderate, name="group_moderate"),
]

# The family's other pages (web/family.py).
urlpatterns += [
    path("children/<uuid:child_id>/appointments/", family.appointments, name="appointments"),
    path(
        "children/<uuid:child_id>/appointments/<uuid:appointment_id>/confirm/",
        family.appointment_confirm,
        name="appointment_confirm",
    ),
    path(
        "children/<uuid:child_id>/appointments/<uuid:appointment_id>/change/",
        family.appointment_change,
        name="appointment_change",
    ),
    path("children/<uuid:child_id>/schedule/", family.schedule, name="schedule"),
    path("children/<uuid:child_id>/medicines/", family.medicines, name="medicines"),
    path("children/<uuid:child_id>/coverage/", family.coverage, name="coverage"),
    path("children/<uuid:child_id>/access-log/", family.access_log, name="access_log"),
    path("account/", family.account, name="account"),
    path("account/notifications/", family.notifications_update, name="notifications_update"),
    path("account/language/", family.language_update, name="language_update"),
    path("account/devices/<uuid:subscription_id>/off/", family.push_device_revoke, name="push_device_revoke"),
]

# The account's own pages (web/account.py).
urlpatterns += [
    path("account/invitation/", account.redeem, name="account_redeem"),
    path("account/phone/", account.phone, name="account_phone"),
    path("account/phone/verify/", account.phone_verify, name="account_phone_verify"),
    path("account/phone/code/", account.phone_code, name="account_phone_code"),
    path("account/sessions/", account.sessions, name="account_sessions"),
    path("account/sessions/end/", account.sessions_end, name="account_sessions_end"),
]

# The secure messenger (web/messenger.py): a guardian's conversations, the care team's shared inbox.
urlpatterns += [
    path("messages/", messenger.messages_home, name="messages"),
    path("inbox/", messenger.inbox, name="inbox"),
    path("children/<uuid:child_id>/messages/", messenger.thread_list, name="threads"),
    path("children/<uuid:child_id>/messages/new/", messenger.thread_new, name="thread_new"),
    path("children/<uuid:child_id>/messages/<uuid:thread_id>/", messenger.thread_page, name="thread"),
    path("children/<uuid:child_id>/messages/<uuid:thread_id>/reply/", messenger.thread_reply, name="thread_reply"),
    path("children/<uuid:child_id>/messages/<uuid:thread_id>/since/", messenger.thread_since, name="thread_since"),
    path("children/<uuid:child_id>/messages/<uuid:thread_id>/read/", messenger.thread_read, name="thread_read"),
    path("children/<uuid:child_id>/messages/<uuid:thread_id>/claim/", messenger.thread_claim, name="thread_claim"),
    path("children/<uuid:child_id>/messages/<uuid:thread_id>/assign/", messenger.thread_assign, name="thread_assign"),
    path("children/<uuid:child_id>/attachments/<uuid:attachment_id>/", messenger.attachment, name="attachment"),
    path(
        "children/<uuid:child_id>/alerts/<uuid:alert_id>/acknowledge/",
        messenger.alert_acknowledge,
        name="alert_acknowledge",
    ),
]

# The family's test results and visit summaries (web/results.py).
urlpatterns += [
    path("children/<uuid:child_id>/results/", results.results, name="results"),
    path("children/<uuid:child_id>/results/<uuid:result_id>/", results.result, name="result"),
    path("children/<uuid:child_id>/visit-summaries/", results.visit_summaries, name="visit_summaries"),
    path(
        "children/<uuid:child_id>/visit-summaries/<uuid:summary_id>/",
        results.visit_summary,
        name="visit_summary",
    ),
    path(
        "children/<uuid:child_id>/visit-summaries/<uuid:summary_id>/pdf/",
        results.visit_summary_pdf,
        name="visit_summary_pdf",
    ),
    # Sign-in by a code sent by email (allauth's login by code), then the second factor if any.
    path("sign-in/email/", views.sign_in_email, name="sign_in_email"),
    path("sign-in/email/code/", views.sign_in_email_code, name="sign_in_email_code"),
]

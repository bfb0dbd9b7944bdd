from django.urls import path

from web import messenger, views

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    path("sign-in/", views.sign_in, name="sign_in"),
    path("sign-in/code/", views.sign_in_code, name="sign_in_code"),
    path("sign-out/", views.sign_out, name="sign_out"),
    path("children/<uuid:child_id>/", views.child_today, name="today"),
    path("children/<uuid:child_id>/medicines/<uuid:plan_id>/doses/", views.dose_record, name="dose_record"),
    path("children/<uuid:child_id>/medicines/<uuid:plan_id>/refill/", views.refill_request, name="refill_request"),
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

from django.urls import path

from web import account, family, views

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

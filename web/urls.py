from django.urls import path

from web import views

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

# The account's own pages.
from web import account  # noqa: E402 (this block is appended to the URL list above)

urlpatterns += [
    path("account/invitation/", account.redeem, name="account_redeem"),
    path("account/phone/", account.phone, name="account_phone"),
    path("account/phone/verify/", account.phone_verify, name="account_phone_verify"),
    path("account/phone/code/", account.phone_code, name="account_phone_code"),
    path("account/sessions/", account.sessions, name="account_sessions"),
    path("account/sessions/end/", account.sessions_end, name="account_sessions_end"),
]

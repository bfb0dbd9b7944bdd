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

from django.urls import path

from portal.metrics import views

app_name = "metrics"
urlpatterns = [path("dashboard", views.dashboard, name="dashboard")]

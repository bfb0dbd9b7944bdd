from django.urls import path

from portal.metrics import views

app_name = "metrics"
urlpatterns = [
    path("dashboard", views.dashboard, name="dashboard"),
    path("dashboard.csv", views.dashboard_csv, name="dashboard_csv"),
    path("dashboard.pdf", views.dashboard_pdf, name="dashboard_pdf"),
]

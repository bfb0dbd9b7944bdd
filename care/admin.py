"""Administrators set a department's own business hours (where it keeps other than the hospital's)."""

from django.contrib import admin

from care.models import DepartmentHours
from portal.admin import site


@admin.register(DepartmentHours, site=site)
class DepartmentHoursAdmin(admin.ModelAdmin[DepartmentHours]):
    list_display = ("department", "time_zone", "opens", "closes", "weekdays")

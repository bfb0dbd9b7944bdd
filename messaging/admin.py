"""Administrators manage routing rules; thread content stays out of the admin."""

from django.contrib import admin

from messaging.models import RoutingRule
from portal.admin import site


@admin.register(RoutingRule, site=site)
class RoutingRuleAdmin(admin.ModelAdmin[RoutingRule]):
    list_display = ("order", "topic", "priority", "department", "reply_within_minutes", "business_hours_only", "active")
    list_filter = ("active", "topic", "priority", "department")
    ordering = ("order",)

from django import template

from telemetry_app.charts import fmt_number, fmt_percent, fmt_seconds

register = template.Library()

register.filter("num", fmt_number)
register.filter("seconds", fmt_seconds)
register.filter("percent", fmt_percent)

from django import template

from sessions_app.money import exact_cost, format_cost
from telemetry_app.charts import fmt_number, fmt_percent, fmt_seconds

register = template.Library()

register.filter("num", fmt_number)
register.filter("seconds", fmt_seconds)
register.filter("percent", fmt_percent)
register.filter("cost", format_cost)  # 4 decimals, no currency sign
register.filter("exact_cost", exact_cost)  # every stored decimal (a tooltip)

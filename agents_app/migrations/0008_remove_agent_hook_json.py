"""Hooks as rows (3/3): the JSON fields, now copied into AgentHook rows by 0007, go."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("agents_app", "0007_hook_rows_data"),
    ]

    operations = [
        migrations.RemoveField(
            model_name='agent',
            name='hook_modes',
        ),
        migrations.RemoveField(
            model_name='agent',
            name='post_hooks',
        ),
        migrations.RemoveField(
            model_name='agent',
            name='pre_hooks',
        ),
    ]

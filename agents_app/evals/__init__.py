"""Evals: suites of cases run against agents, teams and workflows through the normal run pipeline,
judged by a model through the project's own model layer (docs/evals.md).

services.py  checks, start, cancel, delete, the end of an eval run (writes)
runner.py    one case: the target's runs, the judges, the scores (called by the Celery task,
             the command and the foreground helpers)
"""

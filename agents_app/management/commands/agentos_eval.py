"""`manage.py agentos_eval SUITE... [--json-output FILE] [--fail-under SCORE]`: run eval suites in the
foreground (this process, one case after the other, through the same runner as the Celery task),
with a progress bar and a results table, and an exit status a CI job can gate on.

Exit status: 0 when every case passed (with --fail-under: when every suite scored at least SCORE,
in percent of cases passed, and no case ended in error); 1 otherwise; 2 for an unknown suite or a
suite that cannot run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agents_app.apis_evals import EvalRunDetailSerializer
from agents_app.eval_models import EvalCaseResult, EvalRun, EvalStatus
from agents_app.evals.runner import eval_run_execute_here
from agents_app.evals.services import eval_run_check, eval_run_start, eval_runs_compare, suite_get
from agents_app.models import ModelConfig
from sessions_app.errors import EvalInvalid, UnknownEvalSuite

_STYLE = {"passed": "green", "failed": "red", "error": "red", "partial": "yellow", "cancelled": "dim"}


class Command(BaseCommand):
    help = "Run eval suites in the foreground; exit non-zero when a case fails (docs/evals.md)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("suites", nargs="+", metavar="SUITE", help="Suite slugs (or ids).")
        parser.add_argument("--json-output", metavar="FILE", help="Write the eval runs and their results as JSON.")
        parser.add_argument(
            "--compare-models",
            nargs=2,
            metavar=("MODEL_A", "MODEL_B"),
            help="Run each suite on two model configs (names) instead of the target's own, side by side.",
        )
        parser.add_argument(
            "--compare-versions",
            nargs=2,
            type=int,
            metavar=("VERSION_A", "VERSION_B"),
            help="Run each suite's target as two of its saved configuration versions, side by side.",
        )
        parser.add_argument(
            "--fail-under",
            type=float,
            metavar="SCORE",
            help="Pass when each suite scores at least SCORE percent of cases passed (default: every case).",
        )

    def handle(
        self,
        *args: Any,
        suites: list[str],
        json_output: str | None,
        fail_under: float | None,
        compare_models: list[str] | None = None,
        compare_versions: list[int] | None = None,
        **options: Any,
    ) -> None:
        console = Console(file=self.stdout._out)  # type: ignore[attr-defined]
        if not console.is_terminal:
            console.width = 200  # a CI log: whole reasons on one line
        try:
            chosen = [suite_get(slug) for slug in suites]
        except UnknownEvalSuite as exc:
            raise CommandError(str(exc), returncode=2) from None
        if compare_models and compare_versions:
            raise CommandError("Compare models or versions, not both.", returncode=2)
        # The variants each suite runs as: (model config, version); two of them compare side by side.
        variants: list[tuple[ModelConfig | None, int | None]] = [(None, None)]
        if compare_models:
            variants = []
            for name in compare_models:
                model = ModelConfig.objects.filter(name=name).first()
                if model is None:
                    raise CommandError(f"No model config named {name!r}.", returncode=2)
                variants.append((model, None))
        elif compare_versions:
            variants = [(None, number) for number in compare_versions]
        comparing = len(variants) == 2
        # Refuse what cannot run before anything runs: exit 2 at once, not after a first suite's run.
        for suite in chosen:
            for model, version in variants:
                try:
                    eval_run_check(suite=suite, model=model, version=version)
                except EvalInvalid as exc:
                    raise CommandError(f"{suite.slug}: {exc.detail}", returncode=2) from None
        if json_output and not Path(json_output).parent.is_dir():
            raise CommandError(f"--json-output: no directory {str(Path(json_output).parent)!r}.", returncode=2)
        runs: list[EvalRun] = []
        comparisons: list[dict[str, Any]] = []
        for suite, (model, version), last in [
            (suite, variant, i == len(variants) - 1) for suite in chosen for i, variant in enumerate(variants)
        ]:
            try:
                run = eval_run_start(
                    suite=suite, trigger=EvalRun.Trigger.COMMAND, publish=False, model=model, version=version
                )
            except EvalInvalid as exc:
                raise CommandError(f"{suite.slug}: {exc.detail}", returncode=2) from None
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                disable=not console.is_terminal,
            ) as progress:
                task = progress.add_task(suite.slug, total=run.cases_total)

                def advance(result: EvalCaseResult, task: Any = task, progress: Progress = progress) -> None:
                    progress.advance(task)

                runs.append(eval_run_execute_here(run, on_case=advance))
            console.print(_table(runs[-1]))
            if comparing and last:
                comparisons.append(eval_runs_compare(runs[-2], runs[-1]))
                console.print(_comparison_table(suite.slug, comparisons[-1]))
        if json_output:
            data: Any = [EvalRunDetailSerializer(run).data for run in runs]
            if comparing:
                data = {"eval_runs": data, "comparisons": comparisons}
            try:
                Path(json_output).write_text(json.dumps(data, indent=2, default=str))
            except OSError as exc:
                raise CommandError(
                    f"--json-output: cannot write {json_output!r}: {exc.strerror}.", returncode=2
                ) from None
        failed = [run for run in runs if not _ok(run, fail_under)]
        summary = ", ".join(f"{run.suite.slug}: {run.status} {_score(run)}" for run in runs)
        if failed:
            console.print(f"[red]FAILED[/red] {summary}")
            sys.exit(1)
        console.print(f"[green]OK[/green] {summary}")


def _label(side: dict[str, Any]) -> str:
    """A side of a comparison: its model, and its configuration version when it ran as one."""
    return f"{side['model']} v{side['version']}" if side.get("version") else str(side["model"])


def _comparison_table(slug: str, comparison: dict[str, Any]) -> Table:
    first, second = comparison["first"], comparison["second"]
    a, b = _label(first), _label(second)
    if a == b:  # two runs on the same model and version: tell them apart by order
        a, b = f"1: {a}", f"2: {b}"
    table = Table(title=f"{slug}: {a} vs {b}")
    for column in ("case", "kind", a, b, "same"):
        table.add_column(column, overflow="fold")

    def cell(side: dict[str, Any] | None) -> str:
        if side is None:
            return "-"
        score = "" if side["score"] is None else f" {side['score']:g}"
        return f"{side['status']}{score}"

    for row in comparison["cases"]:
        table.add_row(row["name"], row["kind"], cell(row["first"]), cell(row["second"]), "yes" if row["same"] else "NO")
    table.add_row(
        "total",
        "",
        f"{first['status']} {_pct(first['score'])}",
        f"{second['status']} {_pct(second['score'])}",
        "",
    )
    return table


def _pct(score: float | None) -> str:
    return "-" if score is None else f"{score:g}%"


def _ok(run: EvalRun, fail_under: float | None) -> bool:
    if fail_under is None:
        return run.status == EvalStatus.PASSED
    if run.results.filter(status=EvalStatus.ERROR).exists():
        return False
    return run.score is not None and run.score >= fail_under


def _score(run: EvalRun) -> str:
    return "-" if run.score is None else f"{run.score:g}%"


def _table(run: EvalRun) -> Table:
    table = Table(title=f"{run.suite.slug}: {run.status} {_score(run)} ({run.cases_passed}/{run.cases_total} passed)")
    for column in ("#", "case", "kind", "status", "score", "seconds", "reason"):
        table.add_column(column, overflow="fold")
    for result in run.results.order_by("position"):
        style = _STYLE.get(result.status, "")
        table.add_row(
            str(result.position + 1),
            result.name or result.input[:40],
            result.kind,
            f"[{style}]{result.status}[/{style}]" if style else result.status,
            "-" if result.score is None else f"{result.score:g}",
            "-" if result.duration is None else f"{result.duration:.2f}",
            result.reason[:200],
        )
    return table

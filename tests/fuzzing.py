"""What the schemathesis suites share (tests/test_schema_fuzz.py for /api/, test_schema_fuzz_os.py
for /os/): one configuration shape, deterministic, with the run operations drawn more often."""

from __future__ import annotations

import os

import schemathesis


def fuzz_config(*, seed: int, examples: int, run_operation_ids: list[str]) -> schemathesis.Config:
    """`AGENTOS_FUZZ_EXAMPLES` raises the examples per operation (the run operations get at least
    twice the default); `AGENTOS_FUZZ_COVERAGE=1` adds schemathesis's coverage phase."""
    max_examples = int(os.environ.get("AGENTOS_FUZZ_EXAMPLES", str(examples)))
    run_examples = max(max_examples, 2 * examples)  # the run endpoints are the ones that matter most
    return schemathesis.Config.from_dict(
        {
            "seed": seed,
            "generation": {
                "max-examples": max_examples,
                "deterministic": True,
                "database": "none",
                # Credentials are a real token per role (the suites' fixtures), never generated.
                "with-security-parameters": False,
            },
            "phases": {"coverage": {"enabled": os.environ.get("AGENTOS_FUZZ_COVERAGE") == "1"}},
            "operations": [
                {"include-operation-id": op, "generation": {"max-examples": run_examples}} for op in run_operation_ids
            ],
        }
    )

"""The OpenAPI document fuzzed in-process (schemathesis.openapi.from_wsgi), as the
schemathesis CLI would: every operation, every phase (examples, coverage, fuzzing,
stateful), every check, on SQLite and PostgreSQL. Zero failures: no 5xx, every answer
conforms to the document, input that violates it is refused, undeclared methods
answer 405 with Allow. A fixed seed makes a failure reproducible;
``SCHEMATHESIS_EXAMPLES`` changes the number of examples per operation (default 100)."""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import engine  # noqa: E402 - after the importorskip
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.core.result import Ok  # noqa: E402
from schemathesis.engine import events  # noqa: E402

SEED = 20250707
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "100"))
CONFIG = {
    "seed": SEED,
    # Neither schemathesis's feedback cache (.schemathesis/) nor Hypothesis's example
    # database (.hypothesis/): what earlier runs, with other seeds or code, found would
    # be replayed, and the same seed would no longer mean the same run (CI has neither).
    "cache": {"enabled": False},
    "generation": {"max-examples": EXAMPLES, "database": "none"},
    "checks": {
        # Valid by the document is not always accepted: a username or address may be
        # taken, a password may fail its profile's policy (common, too similar), a
        # token may be wrong or used. Those refusals are the field-error statuses the
        # document declares for them (400; 422 for laravel and jsonapi).
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "422", "429"]},
    },
}


def failures(schema) -> tuple[list[str], set[str]]:
    """Run every phase; the failures found (one line and a curl each) and the
    operations that were tested."""
    found, tested = [], set()
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.label:
            tested.add(event.label)
            if event.status.name in ("FAILURE", "ERROR"):
                for checks in event.recorder.checks.values():
                    for check in checks:
                        if check.failure_info is not None:
                            failure = check.failure_info.failure
                            found.append(f"{event.label}: {failure.title}: "
                                         f"{failure.message}\n"
                                         f"{check.failure_info.code_sample}")
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            found.append(f"error: {event.info.format() if hasattr(event, 'info') else event}")
    return found, tested


def test_api_conforms_to_its_document(app):
    schema = schemathesis.openapi.from_wsgi(
        "/api/openapi.json", app, config=SchemathesisConfig.from_dict(CONFIG))
    operations = {result.ok().label for result in schema.get_all_operations()
                  if isinstance(result, Ok)}
    found, tested = failures(schema)
    assert not found, f"{len(found)} failures:\n\n" + "\n\n".join(dict.fromkeys(found))
    assert operations <= tested

"""The OpenAPI document fuzzed in-process (schemathesis.openapi.from_wsgi), as the
schemathesis CLI would: every operation, every phase (examples, coverage, fuzzing,
stateful), every check, on SQLite and PostgreSQL, with the configuration `st run`
reads (schemathesis.toml at the repo root). Zero failures: no 5xx, every answer
conforms to the document, input that violates it is refused, undeclared methods
answer 405 with Allow. A fixed seed (in the file) makes a failure
reproducible; ``SCHEMATHESIS_EXAMPLES`` changes the number of examples per operation
(the file says 100)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import engine  # noqa: E402 - after the importorskip
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.core.result import Ok  # noqa: E402
from schemathesis.engine import events  # noqa: E402

# The one configuration, shared with `st run` (which reads it from the repo root).
CONFIG_FILE = Path(__file__).resolve().parent.parent / "schemathesis.toml"


def configuration() -> dict:
    """schemathesis.toml as a dict; ``SCHEMATHESIS_EXAMPLES`` overrides max-examples."""
    data = tomllib.loads(CONFIG_FILE.read_text(encoding="utf-8"))
    if os.environ.get("SCHEMATHESIS_EXAMPLES"):
        data["generation"]["max-examples"] = int(os.environ["SCHEMATHESIS_EXAMPLES"])
    return data


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
        "/api/openapi.json", app, config=SchemathesisConfig.from_dict(configuration()))
    operations = {result.ok().label for result in schema.get_all_operations()
                  if isinstance(result, Ok)}
    found, tested = failures(schema)
    assert not found, f"{len(found)} failures:\n\n" + "\n\n".join(dict.fromkeys(found))
    assert operations <= tested


def test_the_configuration_is_the_one_st_run_reads(monkeypatch):
    """`st run` from the repo root discovers schemathesis.toml: the seed, no caches, the
    refusal statuses the contracts fix."""
    monkeypatch.chdir(CONFIG_FILE.parent)
    monkeypatch.delenv("SCHEMATHESIS_EXAMPLES", raising=False)
    found = SchemathesisConfig.discover()
    assert found.config_path == str(CONFIG_FILE)
    assert found.seed == configuration()["seed"]
    assert found.cache.enabled is False
    generation = found.projects.default.generation
    assert generation.max_examples >= 100 and generation.database == "none"
    acceptance = found.projects.default.checks.positive_data_acceptance
    assert {"400", "422"} <= set(acceptance.expected_statuses)

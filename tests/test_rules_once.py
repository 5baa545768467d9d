"""The patterns and bounds of a job exist once: the gateway's REST models and query parameters
hold the very objects of services/core/job/rules.py that the jobs service enforces."""

from __future__ import annotations

from typing import Any

from fastapi.params import Query
from pydantic.fields import FieldInfo

from services.core.generators.registry import ProviderConfig
from services.core.job import rules
from services.core.job.public import Job
from services.core.job.status import JobStatus
from services.gateway import keys, providers, schemas
from services.jobs.settings import JobsSettings


def constraint(field: FieldInfo, name: str) -> Any:
    """The value of one constraint (pattern, max_length, le, ...) among a field's metadata."""
    for item in field.metadata:
        if hasattr(item, name):
            return getattr(item, name)
    raise AssertionError(f"no {name} on {field}")


def query(annotated: Any) -> Query:
    (param,) = [item for item in annotated.__metadata__ if isinstance(item, Query)]
    return param


def test_the_job_create_body_holds_the_rules_objects() -> None:
    fields = schemas.JobCreate.model_fields
    assert constraint(fields["userId"], "pattern") is rules.USER_ID.pattern
    assert constraint(fields["prompt"], "max_length") is rules.PROMPT_MAX_CHARS
    assert constraint(fields["maxRetries"], "le") is rules.MAX_RETRIES
    assert constraint(keys.ApiKeyCreate.model_fields["userId"], "pattern") is rules.USER_ID.pattern


def test_list_queries_hold_the_rules_objects() -> None:
    assert constraint(query(schemas.UserIdQuery), "pattern") is rules.USER_ID.pattern
    assert constraint(query(schemas.Skip), "le") is rules.LIST_MAX_SKIP
    assert constraint(query(schemas.Take), "le") is rules.TAKE_MAX


def test_provider_names_follow_one_pattern() -> None:
    assert constraint(providers.ProviderTest.model_fields["provider"], "pattern") is rules.PROVIDER_NAME.pattern
    assert constraint(ProviderConfig.model_fields["name"], "pattern") is rules.PROVIDER_NAME.pattern


def test_the_retry_bound_of_the_settings_is_the_rules() -> None:
    assert constraint(JobsSettings.model_fields["jobs_default_max_retries"], "le") is rules.MAX_RETRIES


def test_one_status_enum_from_the_database_to_the_rest_answer() -> None:
    assert Job.model_fields["status"].annotation is JobStatus

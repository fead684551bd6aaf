"""The OpenAPI document tells the whole truth: schemathesis with every check, over every operation.

Beside test_api_fuzz.py (no 5xx, answers match their schemas), this runs all of schemathesis'
checks, signed in as an admin: each status, content type and header an answer carries is
declared; a request the schema allows is accepted and one it forbids is refused; 405s name the
allowed methods. A few examples per operation keep ``make test`` fast; the run is derandomized
(fixed seed), so a failure reproduces. ``CONFORMANCE_EXAMPLES=100`` runs it hard.

Where the server refuses a schema-valid request for a reason no schema can state (a wrong
password, a token that was never issued, a job type or collection that does not exist, a
foreign key to nothing), ``SEMANTIC_REFUSALS`` lets that operation's refusal status pass the
positive-data check, each with its reason. Strings never carry NUL: Postgres cannot store
one, and the server refuses it in any field (backend/inputs.py).
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from tests.integration.test_api_fuzz import Fuzzed, _openapi_document, fuzzed  # noqa: F401

EXAMPLES = int(os.environ.get("CONFORMANCE_EXAMPLES", "3"))
# No xdist group: the 114 operations spread over every worker (each sets the fuzzed app up
# once, ~5 s), so the run's ~2 CPU-minutes are not one worker's wall time in `make test`.

ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]
# operationId: (the status it answers a schema-valid request with, why no schema can say so)
SEMANTIC_REFUSALS: dict[str, tuple[int, str]] = {
    "post_auth_email_confirm": (400, "a token the server never mailed"),
    "post_auth_verify": (400, "a token the server never mailed"),
    "post_auth_password_reset": (400, "a token the server never mailed"),
    "post_invitations_accept": (400, "an invitation token that was never issued"),
    "post_auth_logout": (400, "the fuzzer signs in with an API key, which has no session"),
    "delete_auth_me": (422, "the account's password, which the fuzzer does not know"),
    "patch_auth_me": (422, "the current password, which the fuzzer does not know"),
    "post_auth_email": (422, "the account's password, which the fuzzer does not know"),
    "post_auth_mfa_totp": (422, "the account's password, which the fuzzer does not know"),
    "post_auth_mfa_totp_enable": (422, "a code from an authenticator app"),
    "delete_auth_mfa_totp": (422, "a code from an authenticator app"),
    "post_auth_api_keys": (422, "collection names that exist"),
    "post_webhooks": (422, "a collection that exists"),
    "post_jobs": (422, "a job type that is registered"),
    "post_jobs_schedules": (422, "a job type that is registered, a valid cron line"),
    "run_prompt": (422, "the variables each prompt's own input schema asks for"),
    "post_v1_chat_completions": (422, "a model the gateway knows"),
    "post_v1_embeddings": (422, "a model the gateway knows"),
    "create_tasks": (422, "a project id that exists (a foreign key)"),
    "get_ai_usage": (422, "`from` before `to`: a relation between two parameters"),
    "get_auth_oauth_by_provider_callback": (400, "a state the server issued for this trip"),
    "post_auth_oauth_by_provider_callback": (400, "a state the server issued for this trip"),
    "post_file_upload": (422, "Upload-Metadata naming a record and file field that exist"),
    **{
        f"{verb}_{name}": (415, "file parts whose bytes are of a type the field takes (sniffed)")
        for verb in ("create", "update")
        for name in ("notes", "projects")
    },
    **{
        f"batch_{name}": (422, "each operation's data fits the collection (op-dependent)")
        for name in ("messages", "notes", "projects", "tasks")
    },
}


# operationId: (the status it refuses a schema-violating request with besides schemathesis'
# usual ones, why): the tus protocol answers a Tus-Resumable it does not speak, or none, with 412
# (a missing Upload-Length or Upload-Offset is a 422 naming it).
PROTOCOL_REFUSALS: dict[str, tuple[int, str]] = {
    f"{method}_file_upload": (412, "tus 1.0: an unsupported Tus-Resumable is 412")
    for method in ("post", "head", "patch", "delete")
}
# schemathesis' own expected statuses of the two checks (its defaults), to which 412 is added.
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx"]
HEADER_MISSING = ["400", "401", "403", "406", "415", "422"]


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": 20,
            "generation": {"max-examples": EXAMPLES, "allow-x00": False, "deterministic": True},
            "operations": [
                {
                    "include-operation-id": operation_id,
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": [*ACCEPTED, str(status)]}
                    },
                }
                for operation_id, (status, _) in SEMANTIC_REFUSALS.items()
            ]
            + [
                {
                    "include-operation-id": operation_id,
                    "checks": {
                        "negative_data_rejection": {"expected-statuses": [*REJECTED, str(status)]},
                        "missing_required_header": {
                            "expected-statuses": ["406", "422", str(status)]
                        },
                    },
                }
                for operation_id, (status, _) in PROTOCOL_REFUSALS.items()
            ],
        }
    )


# Query values whose validity no schema can state, so the fuzzer is not given them: a cursor
# is the server's own token (test_paging.py refuses forged ones), a filter a sentence of the
# filter language (tests/security/test_filters.py refuses bad ones).
OPAQUE_QUERY = ("cursor", "filter")


def _without_opaque_queries(document: dict[str, Any]) -> dict[str, Any]:
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "parameters" in operation:
                operation["parameters"] = [
                    p
                    for p in operation["parameters"]
                    if not (p.get("in") == "query" and p.get("name") in OPAQUE_QUERY)
                ]
    return document


schema = schemathesis.openapi.from_dict(
    _without_opaque_queries(_openapi_document()), config=_config()
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
def test_the_document_tells_the_whole_truth(case: Any, fuzzed: Fuzzed) -> None:  # noqa: F811
    # The checks that send probes of their own (a call without credentials) send them through
    # the schema's transport: the app, in process, as the case itself goes.
    case.operation.schema.app = case.operation.app = fuzzed.app
    case.call_and_validate(headers=fuzzed.admin)

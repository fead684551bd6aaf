from http import HTTPStatus

from litestar.exceptions import (
    HTTPException,
    NotFoundException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from backend.problems import problem_from_http_exception


def test_validation_errors_name_the_field_at_fault():
    exc = ValidationException(
        "Validation failed for POST /x",
        extra=[{"message": "Expected `int`, got `str`", "key": "age", "source": "body"}],
    )
    problem = problem_from_http_exception(exc)
    assert problem.status_code == 422
    assert problem.title == "Unprocessable Entity"
    assert problem.extra["errors"] == [
        {"field": "age", "message": "Expected `int`, got `str`", "source": "body"}
    ]


def test_an_oversized_body_says_which_limit():
    problem = problem_from_http_exception(RequestEntityTooLarge())
    assert problem.status_code == 413
    assert "MAX_BODY_BYTES" in problem.detail


def test_http_errors_keep_status_and_detail():
    problem = problem_from_http_exception(NotFoundException("No such record"))
    assert (problem.status_code, problem.title, problem.detail) == (
        404,
        "Not Found",
        "No such record",
    )
    teapot = problem_from_http_exception(HTTPException(status_code=418))
    assert (teapot.status_code, teapot.title) == (418, HTTPStatus(418).phrase)


def test_missing_and_unknown_fields_are_named():
    exc = ValidationException(
        extra=[
            {
                "message": "Object missing required field `password`",
                "key": "data",
                "source": "body",
            },
            {"message": "Object contains unknown field `colour`", "key": "data", "source": "body"},
            {
                "message": "Expected `int`, got `str` - at `$.items[0].count`",
                "key": "data",
                "source": "body",
            },
        ]
    )
    fields = [e["field"] for e in problem_from_http_exception(exc).extra["errors"]]
    assert fields == ["password", "colour", "items[0].count"]

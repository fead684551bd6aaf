"""HTTP routes that mail an address or take a mailed token (/auth/password/…, /auth/otp,
/auth/email…, /auth/convert), and ``after_answer``: how the routes that must not tell whether
an address has an account do their work once the answer is sent. Behind the per-IP limit of
the routes that take a secret (backend/auth/routes.py)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from litestar import Request, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from backend.auth.anonymous import AnonymousUsers
from backend.auth.core import AuthCore, user_view
from backend.auth.deps import BEARER, auth_core_for
from backend.auth.mailed import MailedTokens
from backend.auth.schemas import (
    Accepted,
    ChangeEmail,
    ConfirmEmail,
    ConvertAccount,
    ForgotPassword,
    ResetPassword,
    SignInCodeRequest,
    UserView,
)
from backend.db.transactions import owned_session
from backend.identity import Principal
from backend.problems import may_answer

log = logging.getLogger(__name__)
_Service = TypeVar("_Service")


def after_answer(
    state: State,
    service: Callable[[AuthCore], _Service],
    work: Callable[[_Service], Awaitable[None]],
) -> BackgroundTask:
    """Do ``work`` with the ``service`` it needs (its own transaction) once the answer is sent:
    routes that mail an address answer the same, in the same time, whether or not it has an
    account (issue 18.14)."""

    async def run() -> None:
        try:
            async with owned_session(state.database) as db:
                await work(service(auth_core_for(db, state, state.settings)))
        except Exception:  # the caller has had the answer; the log keeps the failure
            log.exception("mail work after the answer failed")

    return BackgroundTask(run)


@post("/password/forgot", summary="Mail a password reset token", status_code=HTTP_202_ACCEPTED)
async def forgot_password(
    data: ForgotPassword, request: Request[Any, Any, Any]
) -> Response[Accepted]:
    # Always 202 at once, whether or not the email exists; the work follows the answer.
    work = after_answer(
        request.app.state, MailedTokens.over, lambda mailed: mailed.forgot_password(data.email)
    )
    return Response(Accepted(), status_code=HTTP_202_ACCEPTED, background=work)


@post(
    "/convert",
    opt=may_answer(409),
    summary="Keep my anonymous account: give it an email and a password (mails a token)",
    description="The caller's own anonymous account (409 `not_anonymous` otherwise). Always"
    " `202`: the address gets a token for POST /auth/email/confirm, which sets the email"
    " (verified) and makes the account permanent, its records kept; an address that has an"
    " account gets a mail telling its owner instead.",
    status_code=HTTP_202_ACCEPTED,
    security=BEARER,
)
async def convert(
    data: ConvertAccount,
    current: Principal,
    anonymous_service: AnonymousUsers,
    request: Request[Any, Any, Any],
) -> Response[Accepted]:
    await anonymous_service.check_convertible(current)
    work = after_answer(
        request.app.state,
        AnonymousUsers.over,
        lambda anonymous: anonymous.request_conversion(current, data),
    )
    return Response(
        Accepted(status="check_your_mail"), status_code=HTTP_202_ACCEPTED, background=work
    )


@post("/otp", summary="Mail me a one-time sign-in code", status_code=HTTP_202_ACCEPTED)
async def send_sign_in_code(
    data: SignInCodeRequest, request: Request[Any, Any, Any]
) -> Response[Accepted]:
    # Always 202 at once, whether or not the email has an account; the work follows the answer.
    work = after_answer(
        request.app.state, MailedTokens.over, lambda mailed: mailed.send_sign_in_code(data.email)
    )
    return Response(Accepted(), status_code=HTTP_202_ACCEPTED, background=work)


@post("/password/reset", summary="Set a new password with a reset token", status_code=HTTP_200_OK)
async def reset_password(data: ResetPassword, mailed_token_service: MailedTokens) -> Accepted:
    await mailed_token_service.reset_password(data.token, data.new_password)
    return Accepted(status="password_changed")


@post(
    "/email",
    summary="Change my email: mails a token to the new address (needs my password)",
    status_code=HTTP_202_ACCEPTED,
    security=BEARER,
)
async def change_email(
    data: ChangeEmail, current: Principal, mailed_token_service: MailedTokens
) -> Accepted:
    await mailed_token_service.request_email_change(current, data)
    return Accepted()


@post(
    "/email/confirm",
    summary="Switch to the new email with the mailed token",
    status_code=HTTP_200_OK,
)
async def confirm_email(data: ConfirmEmail, mailed_token_service: MailedTokens) -> UserView:
    return user_view(await mailed_token_service.confirm_email_change(data.token))

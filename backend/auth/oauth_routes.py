"""HTTP routes of the trip to a sign-in provider (/auth/oauth/…): the providers on offer, the
start (a 302 to the provider) and the way back (a 302 to the app with a one-time code). Anyone
may call them; each is behind the per-IP limit the app gives it (backend/auth/routes.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import get, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, Parameter
from litestar.response import Redirect

from backend.auth.oauth_flow import SignInFlows
from backend.auth.schemas import (
    CallbackForm,
    OAuthProviderView,
)
from backend.problems import may_answer


@get(
    "/oauth/providers",
    summary="The sign-in providers this app offers (anyone may ask)",
)
async def oauth_providers(state: State) -> list[OAuthProviderView]:
    return [
        OAuthProviderView(name=p.name, display_name=p.display_name, kind=p.kind)
        for p in state.sign_in_providers.providers.values()
    ]


@get(
    "/oauth/{provider:str}/authorize",
    opt=may_answer(400, 502),
    summary="Sign in with a provider: sends the browser there (302), then back to redirect_to",
    description=(
        "Open in the browser (not with fetch). The app makes a PKCE pair first and sends its"
        " S256 code_challenge; the browser comes back to redirect_to with `?code=` (one-time,"
        " short-lived), which the app exchanges at POST /auth/token with grant_type oauth_code"
        " and its code_verifier, or with `?error=` and `error_description`. redirect_to must"
        " match AUTH_REDIRECT_URLS (else 400). Anyone may call it."
    ),
    status_code=302,
    responses={302: ResponseSpec(None, description="To the provider's sign-in page")},
)
async def oauth_authorize(
    provider: str,
    redirect_to: Annotated[str, Parameter(max_length=2048, min_length=1)],
    code_challenge: Annotated[
        str, Parameter(pattern=r"^[A-Za-z0-9_-]{43}$", description="PKCE S256 challenge")
    ],
    sign_in_flows: SignInFlows,
    code_challenge_method: Literal["S256"] = "S256",
) -> Redirect:
    return Redirect(await sign_in_flows.start(provider, redirect_to, code_challenge))


_CALLBACK = (
    "Where the provider sends the browser back: to the app's redirect_to with `?code=` (or"
    " `?error=`). A state that was never issued, was used or expired: 400 problem+json."
)


@get(
    "/oauth/{provider:str}/callback",
    opt=may_answer(400),
    summary="A provider sends the browser back here (302 to the app)",
    description=_CALLBACK,
    status_code=302,
    responses={302: ResponseSpec(None, description="Back to the app's redirect_to")},
)
async def oauth_callback(
    provider: str,
    sign_in_flows: SignInFlows,
    code: Annotated[str | None, Parameter(max_length=2048)] = None,
    oauth_state: Annotated[str | None, Parameter(query="state", max_length=200)] = None,
    error: Annotated[str | None, Parameter(max_length=200)] = None,
) -> Redirect:
    return Redirect(await sign_in_flows.finish(provider, code, oauth_state, error))


@post(
    "/oauth/{provider:str}/callback",
    opt=may_answer(400),
    summary="A provider posts the browser back here (form_post: Apple; 302 to the app)",
    description=_CALLBACK,
    status_code=302,
    responses={302: ResponseSpec(None, description="Back to the app's redirect_to")},
)
async def oauth_callback_form(
    provider: str,
    data: Annotated[CallbackForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    sign_in_flows: SignInFlows,
) -> Redirect:
    return Redirect(await sign_in_flows.finish(provider, data.code, data.state, data.error))

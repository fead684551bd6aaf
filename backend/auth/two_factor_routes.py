"""HTTP routes of two-factor sign-in (/auth/mfa/…): an authenticator app set up, turned on and
off, and recovery codes made again. Each needs the bearer and is behind the per-IP limit of the
routes that take a secret (backend/auth/routes.py)."""

from __future__ import annotations

import msgspec
from litestar import delete, post
from litestar.status_codes import HTTP_200_OK

from backend.auth.core import user_view
from backend.auth.deps import BEARER
from backend.auth.schemas import (
    RecoveryCodes,
    SecondFactor,
    TotpCode,
    TotpEnabled,
    TotpEnroll,
    TotpSecret,
)
from backend.auth.two_factor import TwoFactor
from backend.identity import Principal
from backend.problems import may_answer


@post(
    "/mfa/totp",
    opt=may_answer(409),
    summary="Set up two-factor sign-in: a secret for an authenticator app (needs my password)",
    status_code=HTTP_200_OK,
    security=BEARER,
)
async def enroll_totp(
    data: TotpEnroll, current: Principal, two_factor_service: TwoFactor
) -> TotpSecret:
    return await two_factor_service.enroll_totp(current, data.password)


@post(
    "/mfa/totp/enable",
    opt=may_answer(409),
    summary="Turn two-factor sign-in on with a code from the app",
    status_code=HTTP_200_OK,
    security=BEARER,
)
async def enable_totp(
    data: TotpCode, current: Principal, two_factor_service: TwoFactor
) -> TotpEnabled:
    """The user, and ten single-use recovery codes: shown this once, keep them safe."""
    user, codes = await two_factor_service.enable_totp(current, data.code)
    return TotpEnabled(**msgspec.structs.asdict(user_view(user)), recovery_codes=codes)


@delete(
    "/mfa/totp",
    opt=may_answer(409),
    summary="Turn two-factor sign-in off (needs a code from the app, or a recovery code)",
    security=BEARER,
)
async def disable_totp(
    data: SecondFactor, current: Principal, two_factor_service: TwoFactor
) -> None:
    await two_factor_service.disable_totp(current, data)


@post(
    "/mfa/recovery-codes",
    opt=may_answer(409),
    summary="New recovery codes for the old ones (needs a code from the app, or a recovery code)",
    description="Only while two-factor sign-in is on (409 `totp_not_enabled`). The ten new"
    " codes are shown this once; every code before stops working.",
    status_code=HTTP_200_OK,
    security=BEARER,
)
async def regenerate_recovery_codes(
    data: SecondFactor, current: Principal, two_factor_service: TwoFactor
) -> RecoveryCodes:
    codes = await two_factor_service.regenerate_recovery_codes(current, data)
    return RecoveryCodes(recovery_codes=codes)

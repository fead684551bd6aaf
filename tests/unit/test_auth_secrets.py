from datetime import UTC, datetime, timedelta
from uuid import uuid4

import jwt
import pytest

from backend.auth.secrets import (
    InvalidAccessToken,
    Passwords,
    hash_token,
    issue_access_token,
    new_token,
    passwords_for,
    read_access_token,
)
from backend.config import settings_from_env

KEY = "k" * 48
NOW = datetime(2026, 1, 1, tzinfo=UTC)
COMMON = {"issuer": "litebase", "audience": "litebase"}


def _issue(**overrides):
    values = {
        "secret_key": KEY,
        "user_id": uuid4(),
        "session_id": uuid4(),
        "role": "user",
        "org_id": None,
        "now": NOW,
        "ttl": timedelta(minutes=15),
        **COMMON,
    }
    values.update(overrides)
    return issue_access_token(**values)


def _read(token, now=NOW, **overrides):
    return read_access_token(
        token, secret_key=overrides.pop("secret_key", KEY), now=now, **{**COMMON, **overrides}
    )


def test_passwords_hash_with_argon2id_at_the_settings_costs_and_verify():
    passwords = passwords_for(settings_from_env({}))
    hashed = passwords.hash("correct horse battery")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")  # the defaults: OWASP's
    assert passwords.verify(hashed, "correct horse battery")
    assert not passwords.verify(hashed, "wrong")
    assert not passwords.verify(None, "anything")
    assert not passwords.verify("not a hash", "anything")


def test_a_hash_made_at_other_costs_verifies_and_asks_to_be_made_again():
    cheap, default = Passwords(1024, 1), Passwords(19_456, 2)
    old = cheap.hash("correct horse battery")
    assert old.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert default.verify(old, "correct horse battery")
    assert default.needs_rehash(old)
    assert not cheap.needs_rehash(old)


def test_tokens_are_random_and_stored_as_hashes():
    a, b = new_token("lbr_"), new_token("lbr_")
    assert a != b and a.startswith("lbr_") and len(a) > 40
    assert hash_token(a) == hash_token(a) != hash_token(b)
    assert len(hash_token(a)) == 64


def test_a_fresh_access_token_reads_back_its_claims():
    org = uuid4()
    claims = _read(_issue(role="admin", org_id=org))
    assert claims.role == "admin" and claims.org == org
    assert claims.exp - claims.iat == 900


def _forged(header_alg, key=KEY, **claims):
    payload = {
        "sub": str(uuid4()),
        "sid": str(uuid4()),
        "role": "admin",
        "org": None,
        "iat": int(NOW.timestamp()),
        "exp": int((NOW + timedelta(minutes=5)).timestamp()),
        "iss": "litebase",
        "aud": "litebase",
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v != "DROP"}
    return jwt.encode(payload, key, algorithm=header_alg)


# Forged or stale tokens, named by label: the tokens hold random ids, and pytest-xdist needs
# every worker to collect the same test ids.
FORGED_TOKENS = [
    ("alg none", _forged("none", key=None)),
    ("another key", _forged("HS256", key="x" * 48)),
    ("HS512 with our key", _forged("HS512")),
    ("wrong audience", _forged("HS256", aud="someone-else")),
    ("wrong issuer", _forged("HS256", iss="evil")),
    ("no exp", _forged("HS256", exp="DROP")),
    ("no sid", _forged("HS256", sid="DROP")),
    ("expired", _forged("HS256", exp=int((NOW - timedelta(seconds=1)).timestamp()))),
    ("garbage", "not.a.jwt"),
]


@pytest.mark.parametrize(
    ("label", "token"), FORGED_TOKENS, ids=[label for label, _ in FORGED_TOKENS]
)
def test_tokens_we_did_not_issue_or_that_expired_are_refused(label, token):
    with pytest.raises(InvalidAccessToken):
        _read(token)


def test_an_access_token_expires_on_the_clock():
    token = _issue()
    assert _read(token, now=NOW + timedelta(minutes=14, seconds=59))
    with pytest.raises(InvalidAccessToken, match="expired"):
        _read(token, now=NOW + timedelta(minutes=15))


def test_a_token_issued_in_the_future_is_refused():
    token = _issue(now=NOW + timedelta(minutes=5))
    with pytest.raises(InvalidAccessToken, match="future"):
        _read(token)

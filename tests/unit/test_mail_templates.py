"""Every mail rendered in every shipped language: subject, text and HTML, links into the app,
the language fallbacks, and templates an operator overrides or adds."""

from __future__ import annotations

import re

import pytest

from backend.config import settings_from_env
from backend.mail.compose import (
    VALUES,
    Mail,
    MailKind,
    MailTemplateError,
    app_link,
    compose,
    mail_locales,
    mail_time,
)

APP = "https://app.example.com"
SETTINGS = settings_from_env({"APP_URL": APP, "APP_NAME": "Acme Notes"})
SAMPLE: dict[str, str | int] = {
    "token": "tok_123-abc",
    "hours": 24,
    "minutes": 60,
    "days": 7,
    "code": "042917",
    "new_email": "ada@new.example.com",
    "org": "Analytical <Engines>",
    "role": "admin",
    "inviter": "Charles",
    "when": "2026-12-08 09:30 UTC",
    "ip": "203.0.113.9",
    "device": "Firefox on Linux",
    "remaining": 7,
    "provider": "GitHub",
}
# Where each kind sends the reader: its token page, or the app page it points to.
LINKS = {
    MailKind.VERIFY_EMAIL: f"{APP}/verify?token=tok_123-abc",
    MailKind.PASSWORD_RESET: f"{APP}/reset-password?token=tok_123-abc",
    MailKind.EMAIL_CHANGE: f"{APP}/confirm-email?token=tok_123-abc",
    MailKind.INVITATION: f"{APP}/accept-invitation?token=tok_123-abc",
    MailKind.EMAIL_CHANGE_NOTICE: f"{APP}/account/security",
    MailKind.NEW_SIGN_IN: f"{APP}/account/security",
    MailKind.RECOVERY_CODE_USED: f"{APP}/account/security",
    MailKind.ACCOUNT_EXISTS: f"{APP}/sign-in",
    MailKind.IDENTITY_LINKED: f"{APP}/account/security",
    MailKind.SIGN_IN_CODE: None,
}
SUBJECTS = {
    ("en", MailKind.VERIFY_EMAIL): "Confirm your email address",
    ("de", MailKind.VERIFY_EMAIL): "Bestätige deine E-Mail-Adresse",
    ("en", MailKind.PASSWORD_RESET): "Reset your password",
    ("de", MailKind.PASSWORD_RESET): "Setze dein Passwort zurück",
    ("en", MailKind.SIGN_IN_CODE): "Your sign-in code: 042917",
    ("de", MailKind.SIGN_IN_CODE): "Dein Anmeldecode: 042917",
    ("en", MailKind.EMAIL_CHANGE): "Confirm your new email address",
    ("de", MailKind.EMAIL_CHANGE): "Bestätige deine neue E-Mail-Adresse",
    ("en", MailKind.EMAIL_CHANGE_NOTICE): "Your email address is being changed",
    ("de", MailKind.EMAIL_CHANGE_NOTICE): "Deine E-Mail-Adresse wird geändert",
    ("en", MailKind.INVITATION): "You are invited to Analytical <Engines>",
    ("de", MailKind.INVITATION): "Einladung zu Analytical <Engines>",
    ("en", MailKind.NEW_SIGN_IN): "New sign-in to your Acme Notes account",
    ("de", MailKind.NEW_SIGN_IN): "Neue Anmeldung bei deinem Acme Notes-Konto",
    ("en", MailKind.RECOVERY_CODE_USED): "A recovery code was used",
    ("de", MailKind.RECOVERY_CODE_USED): "Ein Wiederherstellungscode wurde verwendet",
    ("en", MailKind.ACCOUNT_EXISTS): "You already have an account",
    ("de", MailKind.ACCOUNT_EXISTS): "Du hast bereits ein Konto",
    ("en", MailKind.IDENTITY_LINKED): "GitHub can now sign in to your Acme Notes account",
    ("de", MailKind.IDENTITY_LINKED): "GitHub kann dich jetzt bei deinem Acme Notes-Konto anmelden",
}


def _mail(kind: MailKind, locale: str | None) -> Mail:
    values = {name: SAMPLE[name] for name in VALUES[kind]}
    return Mail(kind=kind, to="ada@example.com", locale=locale, values=values)


def test_the_shipped_languages_are_english_and_german():
    assert mail_locales(SETTINGS) == {"en", "de"}


@pytest.mark.parametrize("lang", ["en", "de"])
@pytest.mark.parametrize("kind", list(MailKind))
def test_every_mail_renders_in_every_shipped_language(kind, lang):
    mail = compose(SETTINGS, _mail(kind, lang))
    assert mail.locale == lang
    assert mail.subject == SUBJECTS[lang, kind]
    assert f'<html lang="{lang}">' in mail.html
    assert f"<title>{mail.subject.replace('<', '&lt;').replace('>', '&gt;')}</title>" in mail.html
    # The stylesheet is inlined: no <style> left, style attributes instead.
    assert "<style" not in mail.html and 'style="' in mail.html
    assert "{{" not in mail.text + mail.html and "{%" not in mail.text + mail.html
    assert "Acme Notes" in mail.text and "Acme Notes" in mail.html
    assert "/auth/" not in mail.text + mail.html  # links to the app, never to the API
    link = LINKS[kind]
    if link is not None:
        assert re.search(rf"^{re.escape(link)}$", mail.text, re.MULTILINE), mail.text
        assert f'href="{link}"' in mail.html
    if kind is MailKind.SIGN_IN_CODE:
        assert re.search(r"^042917$", mail.text, re.MULTILINE)
        assert ">042917</span>" in mail.html
    if kind is MailKind.INVITATION:
        # The org's name is the inviter's text: escaped in HTML, as typed in the text part.
        assert "Analytical &lt;Engines&gt;" in mail.html and "<Engines>" not in mail.html
        assert "Analytical <Engines>" in mail.text


def test_the_language_falls_back_from_region_to_language_to_english():
    assert compose(SETTINGS, _mail(MailKind.VERIFY_EMAIL, "de-AT")).locale == "de"
    assert compose(SETTINGS, _mail(MailKind.VERIFY_EMAIL, "DE_at")).locale == "de"
    assert compose(SETTINGS, _mail(MailKind.VERIFY_EMAIL, "fr")).locale == "en"
    assert compose(SETTINGS, _mail(MailKind.VERIFY_EMAIL, None)).locale == "en"


def test_a_mail_without_the_values_its_templates_need_is_refused_when_made():
    with pytest.raises(ValueError, match="needs hours, token"):
        Mail(kind=MailKind.VERIFY_EMAIL, to="ada@example.com")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/verify", f"{APP}/verify?token=t"),
        ("/auth?step=verify", f"{APP}/auth?step=verify&token=t"),
        ("/#/verify", f"{APP}/#/verify?token=t"),
    ],
)
def test_links_add_the_token_to_the_page_the_settings_name(path, expected):
    assert app_link(SETTINGS, path, token="t") == expected


def test_links_use_the_configured_pages_and_public_url_when_app_url_is_unset():
    settings = settings_from_env(
        {"PUBLIC_URL": "http://127.0.0.1:8000/", "MAIL_VERIFY_PATH": "/welcome/confirm"}
    )
    mail = compose(settings, _mail(MailKind.VERIFY_EMAIL, "en"))
    assert "http://127.0.0.1:8000/welcome/confirm?token=tok_123-abc" in mail.text


def test_an_operator_overrides_one_template_and_adds_a_language(tmp_path):
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "verify_email.html").write_text(
        '{% extends "de/_base.html" %}{% block subject %}Willkommen bei {{ app_name }}'
        '{% endblock %}{% block content %}<p><a href="{{ link }}">Los</a></p>{% endblock %}'
    )
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "verify_email.html").write_text(
        '{% extends "layout.html" %}{% block subject %}Confirmez votre adresse{% endblock %}'
        '{% block content %}<a href="{{ link }}">Confirmer</a>{% endblock %}'
    )
    (tmp_path / "fr" / "verify_email.txt").write_text("Confirmez : {{ link }}\n")
    (tmp_path / "mail.css").write_text("a { color: #ff0000; }")
    settings = settings_from_env({"APP_URL": APP, "MAIL_TEMPLATES_DIR": str(tmp_path)})
    assert mail_locales(settings) == {"en", "de", "fr"}

    german = compose(settings, _mail(MailKind.VERIFY_EMAIL, "de"))
    assert german.subject == "Willkommen bei Litebase"
    assert "color: #ff0000" in german.html  # the operator's stylesheet, inlined
    assert "Öffne diesen Link" in german.text  # the shipped text part stays
    french = compose(settings, _mail(MailKind.VERIFY_EMAIL, "fr-CA"))
    assert (french.locale, french.subject) == ("fr", "Confirmez votre adresse")
    assert french.text == f"Confirmez : {APP}/verify?token=tok_123-abc\n"
    # A kind the operator did not write in French comes in English.
    assert compose(settings, _mail(MailKind.PASSWORD_RESET, "fr")).locale == "en"


def test_a_broken_override_names_the_template(tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "verify_email.html").write_text(
        "{% block subject %}Hi {{ nme }}{% endblock %}"
    )
    settings = settings_from_env({"MAIL_TEMPLATES_DIR": str(tmp_path)})
    with pytest.raises(MailTemplateError, match=r"en verify_email.*nme"):
        compose(settings, _mail(MailKind.VERIFY_EMAIL, "en"))


def test_mail_check_renders_every_mail_and_names_a_broken_one(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from backend.cli import main
    from backend.config import get_settings

    monkeypatch.setenv("MAIL_TEMPLATES_DIR", "")
    get_settings.cache_clear()
    try:
        shipped = CliRunner().invoke(main, ["mail", "check"])
        assert shipped.exit_code == 0, shipped.output
        assert f"{len(MailKind) * 2} mails ok, 0 problems" in shipped.output
        (tmp_path / "de").mkdir()
        (tmp_path / "de" / "invitation.txt").write_text("{{ organisation }}")
        monkeypatch.setenv("MAIL_TEMPLATES_DIR", str(tmp_path))
        get_settings.cache_clear()
        broken = CliRunner().invoke(main, ["mail", "check"])
    finally:
        get_settings.cache_clear()
    assert broken.exit_code == 1
    assert "error  the de invitation mail cannot render: 'organisation' is undefined" in (
        broken.output
    )


def test_moments_are_stated_in_utc():
    from datetime import datetime, timedelta, timezone

    berlin = timezone(timedelta(hours=1))
    assert mail_time(datetime(2026, 12, 8, 10, 30, tzinfo=berlin)) == "2026-12-08 09:30 UTC"

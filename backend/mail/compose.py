"""What mail says: the kinds Litebase sends, their Jinja2 templates (HTML and text, in the
recipient's language, the operator's own before the shipped ones) and the links into the app.

Templates live in ``<dir>/<locale>/<kind>.html`` and ``<kind>.txt``; the subject is the HTML
template's ``subject`` block (its ``<title>`` too). ``MAIL_TEMPLATES_DIR`` is searched before
``backend/mail/templates``, file by file, so an operator overrides one template, the layout or
the stylesheet (``mail.css``) and keeps the rest, or adds a language by adding its folder.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlencode

import css_inline
import msgspec
from jinja2 import FileSystemLoader, StrictUndefined, Template, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from backend.config import Settings
from backend.mail.locales import locale_fallbacks

SHIPPED_TEMPLATES = Path(__file__).parent / "templates"


class MailKind(StrEnum):
    """Every mail Litebase sends; each is a template pair in every language."""

    VERIFY_EMAIL = "verify_email"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a kind of mail, not a secret
    SIGN_IN_CODE = "sign_in_code"
    EMAIL_CHANGE = "email_change"  # to the new address: confirm it
    EMAIL_CHANGE_NOTICE = "email_change_notice"  # to the old address: it is being changed
    INVITATION = "invitation"
    NEW_SIGN_IN = "new_sign_in"
    RECOVERY_CODE_USED = "recovery_code_used"
    ACCOUNT_EXISTS = "account_exists"  # a sign-up with an address that has an account
    IDENTITY_LINKED = "identity_linked"  # a sign-in provider's account can now sign in


# What the sender of each kind must give its templates, besides what every mail gets
# (app_name, app_url, sign_in_url, forgot_password_url, security_url, to, lang).
VALUES: Mapping[MailKind, frozenset[str]] = {
    MailKind.VERIFY_EMAIL: frozenset({"token", "hours"}),
    MailKind.PASSWORD_RESET: frozenset({"token", "minutes"}),
    MailKind.SIGN_IN_CODE: frozenset({"code", "minutes"}),
    MailKind.EMAIL_CHANGE: frozenset({"token", "hours", "new_email"}),
    MailKind.EMAIL_CHANGE_NOTICE: frozenset({"new_email"}),
    MailKind.INVITATION: frozenset({"token", "org", "role", "inviter", "days"}),
    MailKind.NEW_SIGN_IN: frozenset({"when", "ip", "device"}),
    MailKind.RECOVERY_CODE_USED: frozenset({"when", "remaining"}),
    MailKind.ACCOUNT_EXISTS: frozenset(),
    MailKind.IDENTITY_LINKED: frozenset({"provider", "when"}),
}
# The kinds that carry a token, and the setting holding the app page that takes it: their
# templates get ``link``, e.g. https://app.example.com/verify?token=….
TOKEN_PAGES: Mapping[MailKind, str] = {
    MailKind.VERIFY_EMAIL: "mail_verify_path",
    MailKind.PASSWORD_RESET: "mail_reset_path",
    MailKind.EMAIL_CHANGE: "mail_email_change_path",
    MailKind.INVITATION: "mail_invitation_path",
}


# A value of each name in VALUES, to render every template with (``check_templates``).
SAMPLE_VALUES: Mapping[str, str | int] = {
    "token": "sample-token",
    "hours": 24,
    "minutes": 10,
    "days": 7,
    "code": "123456",
    "new_email": "new@example.com",
    "org": "Example Org",
    "role": "member",
    "inviter": "Ada",
    "when": "2026-01-01 12:00 UTC",
    "ip": "203.0.113.7",
    "device": "Firefox on Linux",
    "remaining": 9,
    "provider": "GitHub",
}


class Mail(msgspec.Struct, frozen=True, kw_only=True):
    """One mail to send: its kind, the address, the recipient's language (None: English)
    and the values its templates need (``VALUES``). Small and JSON-able: it is the mail
    task's argument, rendered by the worker."""

    kind: MailKind
    to: str
    locale: str | None = None
    values: dict[str, str | int] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = VALUES[self.kind] - self.values.keys()
        if missing:
            raise ValueError(f"a {self.kind} mail needs {', '.join(sorted(missing))}")


class RenderedMail(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    to: str
    locale: str  # the language it was written in (the recipient's, or a fallback)
    subject: str
    text: str
    html: str


class MailTemplateError(Exception):
    """A mail template is missing or cannot render (an operator's override, most likely)."""


def mail_time(moment: datetime) -> str:
    """A moment as mails state it (the ``when`` values): 2026-12-08 09:30 UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def app_link(settings: Settings, path: str, **query: str) -> str:
    """APP_URL + ``path``, with ``query`` added (after the path's own query, if it has one:
    MAIL_VERIFY_PATH=/#/verify or /auth?step=verify work as they read)."""
    link = settings.mail_app_url.rstrip("/") + path
    if query:
        link += ("&" if "?" in path else "?") + urlencode(query)
    return link


def compose(settings: Settings, mail: Mail) -> RenderedMail:
    """``mail`` written out: subject, text and HTML (its CSS inlined), in the recipient's
    language if there are templates for it (de-AT, then de), else in English."""
    environment = _environment(settings.mail_templates_dir)
    candidates = locale_fallbacks(mail.locale)
    html_template = _first(environment, [f"{tag}/{mail.kind}.html" for tag in candidates])
    lang = (html_template.name or "").partition("/")[0]
    text_template = _first(
        environment, [f"{tag}/{mail.kind}.txt" for tag in candidates[candidates.index(lang) :]]
    )
    context = _context(settings, mail, lang)
    try:
        if "subject" not in html_template.blocks:
            raise MailTemplateError(f"{html_template.name} has no subject block")
        subject_parts = html_template.blocks["subject"](html_template.new_context(context))
        # The block is HTML (escaped); the subject is one line of plain text, whatever the values.
        subject = " ".join(html.unescape("".join(subject_parts)).split())
        body = _inliner().inline(html_template.render(context))
        text = text_template.render(context)
    except MailTemplateError:
        raise
    except Exception as exc:
        raise MailTemplateError(f"the {lang} {mail.kind} mail cannot render: {exc}") from exc
    text = "\n".join(line.rstrip() for line in text.strip().splitlines()) + "\n"
    return RenderedMail(
        kind=mail.kind, to=mail.to, locale=lang, subject=subject, text=text, html=body
    )


def check_templates(settings: Settings) -> tuple[int, list[str]]:
    """Render every kind in every language there are templates for (the operator's too)
    with sample values: how many rendered, and a line for each that did not."""
    rendered, problems = 0, []
    for lang in sorted(mail_locales(settings)):
        for kind in MailKind:
            values = {name: SAMPLE_VALUES[name] for name in VALUES[kind]}
            try:
                compose(
                    settings, Mail(kind=kind, to="someone@example.com", locale=lang, values=values)
                )
            except MailTemplateError as exc:
                problems.append(str(exc))
            else:
                rendered += 1
    return rendered, problems


def mail_locales(settings: Settings) -> frozenset[str]:
    """The languages mail can be written in: every folder of templates, shipped or the
    operator's (what Accept-Language is matched against at sign-up)."""
    return _locales_in(settings.mail_templates_dir)


def _context(settings: Settings, mail: Mail, lang: str) -> dict[str, object]:
    context: dict[str, object] = {
        **mail.values,
        "to": mail.to,
        "lang": lang,
        "app_name": settings.app_name,
        "app_url": settings.mail_app_url,
        "sign_in_url": app_link(settings, settings.mail_sign_in_path),
        "forgot_password_url": app_link(settings, settings.mail_forgot_password_path),
        "security_url": app_link(settings, settings.mail_security_path),
    }
    page = TOKEN_PAGES.get(mail.kind)
    if page is not None:
        token = str(mail.values["token"])
        context["link"] = app_link(settings, getattr(settings, page), token=token)
    return context


def _first(environment: SandboxedEnvironment, names: list[str]) -> Template:
    try:
        return environment.select_template(names)
    except Exception as exc:  # missing, or a syntax error in an override
        raise MailTemplateError(f"no usable mail template among {names}: {exc}") from exc


@lru_cache(maxsize=4)
def _environment(templates_dir: str) -> SandboxedEnvironment:
    # Sandboxed, as prompts are: a template is an operator's text, not Python to run.
    search = [templates_dir, str(SHIPPED_TEMPLATES)] if templates_dir else [str(SHIPPED_TEMPLATES)]
    return SandboxedEnvironment(
        loader=FileSystemLoader(search),  # the first folder with a file wins
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a misspelt value fails the render, never mails a blank
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    # Mail clients drop <style> and <link>: every rule goes into style attributes. A template
    # never makes the worker fetch a stylesheet.
    return css_inline.CSSInliner(load_remote_stylesheets=False)


@lru_cache(maxsize=4)
def _locales_in(templates_dir: str) -> frozenset[str]:
    folders = [SHIPPED_TEMPLATES, *([Path(templates_dir)] if templates_dir else [])]
    return frozenset(
        child.name.lower()
        for folder in folders
        if folder.is_dir()
        for child in folder.iterdir()
        if child.is_dir() and any(child.glob("*.html"))
    )

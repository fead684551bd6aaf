"""Where a browser may be sent back to after signing in elsewhere: an allow-list of URLs.

An entry is either an exact URL (``https://app.example.com/auth/done``, ``myapp://signed-in``)
or a prefix ending in ``/*`` (``https://app.example.com/*``, ``https://example.com/app/*``):
any URL of that same scheme, host and port whose path starts with the part before the ``*``,
with any query. Hosts never have wildcards. Whatever the list says, a URL with a user name or
password, a fragment, a backslash, a control character or a ``.``/``..`` path segment is
refused: those are how open redirects slip past prefix checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


def _parts(url: str) -> tuple[str, str, str, str] | None:
    """(scheme, host[:port] in lower case, path, query) of a URL we may redirect to, else None."""
    if not url or len(url) > 2048 or _UNSAFE.search(url):
        return None
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that does not parse raises
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not _SCHEME.match(scheme) or "#" in url or parts.username or parts.password:
        return None
    if scheme in ("http", "https") and not parts.hostname:
        return None
    if not parts.netloc and not parts.path:
        return None
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        return None
    return scheme, parts.netloc.lower(), parts.path, parts.query


def redirect_url_is_valid(entry: str) -> bool:
    """Whether ``entry`` can be in the allow-list: an absolute URL, ``*`` only as a final ``/*``."""
    exact = entry.removesuffix("*")
    if "*" in exact or (entry.endswith("*") and not exact.endswith("/")):
        return False
    parts = _parts(exact)
    return parts is not None and (not entry.endswith("*") or not parts[3])


def redirect_allowed(url: str, allowed: Iterable[str]) -> bool:
    """Whether the allow-list ``allowed`` admits ``url`` (see the module's docstring)."""
    wanted = _parts(url)
    if wanted is None:
        return False
    for entry in allowed:
        if entry.endswith("/*"):
            base = _parts(entry[:-1])
            if (
                base is not None
                and wanted[:2] == base[:2]
                and (wanted[2] or "/").startswith(base[2] or "/")
            ):
                return True
        elif url == entry:
            return True
    return False

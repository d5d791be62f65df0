"""Service URLs (the state DB's, the bus's): their password may come from `${env:NAME}` / `${file:PATH}`,
and never reaches a log line or an error message."""

from __future__ import annotations

from ._config import resolve_secret

__all__ = ["UrlError", "resolved", "without_password"]


class UrlError(Exception):
    """A URL whose `${env:}` / `${file:}` reference does not resolve; one line naming the setting."""


def resolved(url: str, setting: str) -> str:
    """The URL with its `${env:NAME}` / `${file:PATH}` references replaced."""
    try:
        return resolve_secret(url)
    except KeyError as exc:
        raise UrlError(f"{setting}: environment variable {exc.args[0]} is not set") from None
    except OSError as exc:
        raise UrlError(f"{setting}: cannot read {exc.filename}: {exc.strerror}") from None


def without_password(url: str) -> str:
    """`postgresql://user:secret@host/db` -> `postgresql://user:***@host/db`; other URLs unchanged."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"

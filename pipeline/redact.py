"""Keep credentials that ride in URLs out of everything vlprep records or prints.

A ``--mirror`` URL may carry a user and password (``https://user:pass@host/``) or a signed query
(``?token=…``, ``&sig=…``, ``X-Amz-Signature=…``). The download itself needs them; ``SOURCE.json``,
``.verified.json``, ``stats.json``, manifests, progress bars and error messages do not, and those are
read, copied and published by others. Every place that records or prints a URL goes through
:func:`redact_url`; messages that may quote a URL (ours, or an exception's text) go through
:func:`scrub`.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

REDACTED = "REDACTED"
_SECRET_PARAM = re.compile(
    r"(token|sig|signature|secret|passw|pwd|key|credential|auth|session|code|ticket|policy|jwt|^pass$|[_-]pass$)",
    re.IGNORECASE)
"""Query parameter names whose value is a credential: ``token``, ``access_token``, ``sig``,
``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token``, ``X-Goog-Signature``,
``api_key``, ``Key-Pair-Id``, ``Policy``, ``password``, ``pass``, ``jwt``…"""
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` without its user info and with the values of credential-like query parameters replaced.

    >>> redact_url("https://me:s3cret@host/a.tar?X-Amz-Signature=abc&part=1")
    'https://REDACTED@host/a.tar?X-Amz-Signature=REDACTED&part=1'
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return _redact_unparsable(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{_host_port(host, port)}"
    query = _redact_query(parts.query)
    fragment = _redact_query(parts.fragment) if "=" in parts.fragment else parts.fragment
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def parses(url: str) -> bool:
    """True if ``url``'s host and port parse (a password with an unescaped ``/``, ``?`` or ``#`` breaks them)."""
    try:
        parts = urlsplit(url)
        return bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:
        return False


def redact_text(text: str) -> str:
    """Every URL inside ``text`` (``"mirror https://u:p@host/"``) redacted, the rest unchanged."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def secrets_of(url: str) -> list[str]:
    """The credential strings inside ``url`` (user info, secret parameter values), raw and %-decoded."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.username:
            found.append(parts.username)
        if parts.password:
            found.append(parts.password)
    except ValueError:
        pass
    else:
        for text in (parts.query, parts.fragment):
            for name, value in parse_qsl(text, keep_blank_values=False):
                if _SECRET_PARAM.search(name) and value:
                    found.append(value)
    variants = {v for secret in found for v in (secret, unquote(secret), quote(secret, safe=""))}
    return sorted((v for v in variants if len(v) >= 3), key=len, reverse=True)


def scrub(text: str, *urls: str) -> str:
    """``text`` with every URL in ``urls`` redacted and any of their secrets masked wherever they appear
    (an exception's message may quote a path with its query, or a password on its own)."""
    for url in urls:
        if not url:
            continue
        text = text.replace(url, redact_url(url))
        for secret in secrets_of(url):
            text = text.replace(secret, REDACTED)
    return text


def _redact_query(query: str) -> str:
    if not query:
        return query
    pieces = []
    for piece in query.split("&"):
        name, sep, value = piece.partition("=")
        pieces.append(f"{name}={REDACTED}" if sep and value and _SECRET_PARAM.search(unquote(name)) else piece)
    return "&".join(pieces)


def _host_port(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def _redact_unparsable(url: str) -> str:
    """A URL ``urlsplit`` refuses (a bad port): drop everything between ``://`` and the last ``@``,
    even past a ``/``, ``?`` or ``#``: a password holding one of those unescaped is cut there by the
    parser, and the rest of it lands in the path, query or fragment."""
    scheme, _, rest = url.partition("://")
    userinfo = ""
    if "@" in rest:
        userinfo, rest = f"{REDACTED}@", rest.rsplit("@", 1)[1]
    authority, slash, tail = rest.partition("/")
    tail_path, qmark, query = tail.partition("?")
    return f"{scheme}://{userinfo}{authority}{slash}{tail_path}{qmark}{_redact_query(query)}"

"""Credentials out of source descriptions: a URL as it may be shown or stored.

Camera and stream URLs carry secrets in two places: the userinfo before the host
(``rtsp://admin:secret@cam/s``, ``https://TOKEN@host/``) and query or fragment parameters
(``?token=…``, ``?password=…``, signed URLs' ``sig``/``X-Amz-Signature``). :func:`redact_url`
replaces both; :func:`redact_text` does it for every URL inside a message (an FFmpeg error, a
log line). Every place that describes a source (stream header, logs, errors, progress) shows
only redacted text.

Userinfo is everything before the **last** ``@`` of what follows ``scheme://``: passwords are
often typed unencoded (``user:p@ss/w@host``), so this never leaves part of one behind, at the
cost of also hiding the host when a path or query holds an ``@``.
"""

from __future__ import annotations

import re

#: What replaces a secret.
MASK = "***"

# A parameter is secret when its name, lower-cased without "-" and "_", contains one of these.
_SECRET_NAMES = (
    "token",
    "pass",
    "pwd",
    "secret",
    "key",
    "sig",
    "auth",
    "credential",
    "session",
    "jwt",
    "cookie",
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# In free text a URL ends at whitespace or a quote (how FFmpeg and Python quote file names).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"]+")


def redact_url(url: str) -> str:
    """``url`` with its userinfo and the values of secret-looking parameters replaced by
    :data:`MASK`; text without ``scheme://`` is returned as it is (a path, a device).

    >>> redact_url("rtsp://admin:secret@cam:554/stream?channel=1&token=abc")
    'rtsp://***@cam:554/stream?channel=1&token=***'
    """
    match = _SCHEME.match(url)
    if match is None:
        return url
    scheme, rest = url[: match.end()], url[match.end() :]
    at = rest.rfind("@")
    if at >= 0:
        rest = MASK + rest[at:]
    return scheme + _redact_params(rest)


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url` (a URL runs to the
    next whitespace or quote, so a password holding one is only partly found)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def _redact_params(rest: str) -> str:
    """Secret parameter values masked in the query and the fragment (``#access_token=…``)."""
    head, sep, tail = _split_first(rest, "?#")
    out = [head]
    while sep:
        part, next_sep, tail = _split_first(tail, "#") if sep == "?" else (tail, "", "")
        out.append(sep + "&".join(_redact_param(p) for p in part.split("&")))
        sep = next_sep
    return "".join(out)


def _split_first(text: str, seps: str) -> tuple[str, str, str]:
    """``text`` split at the first of ``seps``: ``(before, separator, after)``."""
    cut = min((i for i in (text.find(s) for s in seps) if i >= 0), default=-1)
    if cut < 0:
        return text, "", ""
    return text[:cut], text[cut], text[cut + 1 :]


def _redact_param(param: str) -> str:
    name, eq, value = param.partition("=")
    squashed = name.lower().replace("-", "").replace("_", "")
    if eq and value and any(word in squashed for word in _SECRET_NAMES):
        return f"{name}={MASK}"
    return param

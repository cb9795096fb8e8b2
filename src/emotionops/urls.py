"""URL cleanup: normalise, check scheme and syntax, dedupe, with a reason for every rejection."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ALLOWED_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class UrlVerdict:
    url: str
    ok: bool
    reason: str = ""


def url_sha256(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def normalise(url: str) -> UrlVerdict:
    """Lower-case scheme and host, drop the fragment and default ports; reject what can't be fetched."""
    raw = (url or "").strip()
    if not raw:
        return UrlVerdict(raw, False, "empty url")
    if any(ch.isspace() for ch in raw) or len(raw) > 2048:
        return UrlVerdict(raw, False, "malformed url (whitespace or longer than 2048)")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        return UrlVerdict(raw, False, f"malformed url: {exc}")
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        return UrlVerdict(raw, False, f"scheme {scheme or '(none)'!r} not allowed")
    host = (parts.hostname or "").lower()
    if not host:
        return UrlVerdict(raw, False, "no host")
    if parts.username or parts.password:
        return UrlVerdict(raw, False, "credentials in url")
    default = {"http": 80, "https": 443}[scheme]
    netloc = f"[{host}]" if ":" in host else host
    if port and port != default:
        netloc = f"{netloc}:{port}"
    return UrlVerdict(urlunsplit((scheme, netloc, parts.path or "/", parts.query, "")), True)


def clean_manifest(rows: Iterable[Mapping[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Split manifest rows into (kept, rejected); kept rows get the normalised URL and its hash,
    rejected rows a `reason`. The first occurrence of a URL wins (it has the best rank)."""
    kept: list[dict] = []
    rejected: list[dict] = []
    seen: set[str] = set()
    for row in rows:
        verdict = normalise(str(row.get("image_url") or ""))
        out = dict(row)
        if not verdict.ok:
            rejected.append({**out, "reason": verdict.reason})
            continue
        if verdict.url in seen:
            rejected.append({**out, "reason": "duplicate url"})
            continue
        seen.add(verdict.url)
        kept.append({**out, "image_url": verdict.url, "url_sha256": url_sha256(verdict.url)})
    return kept, rejected

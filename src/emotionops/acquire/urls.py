"""URL cleanup: normalise, check scheme and syntax, denylist, dedupe; a reason for every rejection.

WHY: image search returns emoji, clip art, colouring pages and watermarked stock previews
next to photos. Dropping them by domain or path before anything is downloaded is cheap,
and every rejection names the rule that fired, so a reviewer can tell a good rule from an
over-eager one (`data/manifests/run_date=.../rejected.csv`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from emotionops.errors import EmotionOpsError

#: The rule of a manifest row whose URL came earlier in the run (the first one wins).
DUPLICATE_RULE = "duplicate"

ALLOWED_SCHEMES = ("http", "https")

#: Starter denylist: emoji, clip-art, colouring-page, icon and watermarked stock sites. An
#: entry matches the host and all its subdomains; `*` globs (e.g. `gettyimages.*`,
#: `*clipart*`) are matched against the host and each of its parent domains.
DEFAULT_DENYLIST_DOMAINS = (
    "*emoji*",
    "*clipart*",
    "*coloring*",
    "*colouring*",
    "*cartoon*",
    "flaticon.com",
    "iconfinder.com",
    "pngtree.com",
    "pngwing.com",
    "pngitem.com",
    "freepik.com",
    "vecteezy.com",
    "vectorstock.com",
    "shutterstock.com",
    "istockphoto.com",
    "gettyimages.*",
    "dreamstime.com",
    "alamy.com",
    "123rf.com",
    "depositphotos.com",
    "stock.adobe.com",
    "canstockphoto.com",
    "bigstockphoto.com",
    "agefotostock.com",
    "pond5.com",
)
#: Starter path rules: case-insensitive regexes searched in path + query (a plain word is a
#: substring match).
DEFAULT_DENYLIST_PATH_PATTERNS = (
    r"clip[-_ ]?art",
    r"colou?r(ing)?[-_ ]?(page|sheet|book)",
    r"emoji",
    r"emoticon",
    r"cartoon",
    r"sticker",
    r"watermark",
    r"stock[-_ ]?(photo|image|vector|illustration)",
    r"\.svg$",
)


class UrlRuleError(EmotionOpsError, ValueError):
    """A denylist entry that is not a domain/glob or not a valid regex."""


@dataclass(frozen=True)
class UrlVerdict:
    url: str
    ok: bool
    reason: str = ""
    #: Short machine-readable name of the rule that rejected the URL ("" when ok).
    rule: str = ""


def url_sha256(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def normalise(url: str) -> UrlVerdict:
    """Lower-case scheme and host, drop the fragment and default ports; reject what can't be fetched."""
    raw = (url or "").strip()
    if not raw:
        return UrlVerdict(raw, False, "empty url", "empty")
    if any(ch.isspace() for ch in raw) or len(raw) > 2048:
        return UrlVerdict(raw, False, "malformed url (whitespace or longer than 2048)", "malformed")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        return UrlVerdict(raw, False, f"malformed url: {exc}", "malformed")
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        return UrlVerdict(raw, False, f"scheme {scheme or '(none)'!r} not allowed", "scheme")
    host = (parts.hostname or "").lower()
    if not host:
        return UrlVerdict(raw, False, "no host", "no_host")
    if parts.username or parts.password:
        return UrlVerdict(raw, False, "credentials in url", "credentials")
    default = {"http": 80, "https": 443}[scheme]
    netloc = f"[{host}]" if ":" in host else host
    if port and port != default:
        netloc = f"{netloc}:{port}"
    url = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    try:  # what the downloader's HTTP client will make of it (IDNA, host syntax)
        httpx.URL(url).host  # noqa: B018
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        return UrlVerdict(raw, False, f"malformed host: {exc}", "malformed")
    return UrlVerdict(url, True)


# Denylist ------------------------------------------------------------------------------------
_DOMAIN_ENTRY = re.compile(
    r"^[a-z0-9*]([a-z0-9*-]*[a-z0-9*])?(\.[a-z0-9*]([a-z0-9*-]*[a-z0-9*])?)*$"
)


@dataclass(frozen=True)
class DomainRule:
    """One `urls.denylist_domains` entry."""

    entry: str

    def matches(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if "*" not in self.entry:
            return host == self.entry or host.endswith("." + self.entry)
        labels = host.split(".")
        return any(fnmatchcase(".".join(labels[i:]), self.entry) for i in range(len(labels)))


@dataclass(frozen=True)
class PathRule:
    """One `urls.denylist_path_patterns` entry."""

    pattern: str
    regex: re.Pattern[str]

    def matches(self, path_and_query: str) -> bool:
        return self.regex.search(path_and_query) is not None


def compile_domain_rules(
    entries: Sequence[str], key: str = "urls.denylist_domains"
) -> list[DomainRule]:
    rules = []
    for i, entry in enumerate(entries):
        value = (
            entry.strip().lower().removeprefix("*.").lstrip(".") if isinstance(entry, str) else ""
        )
        if not value or not _DOMAIN_ENTRY.match(value):
            raise UrlRuleError(
                f"{key}[{i}]: {entry!r} is not a domain or domain glob (letters, digits, '-', "
                "'.', '*'; no scheme or path), e.g. 'shutterstock.com' or 'gettyimages.*'"
            )
        rules.append(DomainRule(value))
    return rules


def compile_path_rules(
    patterns: Sequence[str], key: str = "urls.denylist_path_patterns"
) -> list[PathRule]:
    rules = []
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern:
            raise UrlRuleError(f"{key}[{i}]: must be a non-empty string, got {pattern!r}")
        try:
            rules.append(PathRule(pattern, re.compile(pattern, re.IGNORECASE)))
        except re.error as exc:
            raise UrlRuleError(f"{key}[{i}]: {pattern!r} is not a valid regex: {exc}") from None
    return rules


class _UrlsSettings(Protocol):
    denylist_domains: list[str] | None
    denylist_path_patterns: list[str] | None


@dataclass(frozen=True)
class UrlPolicy:
    """The denylist rules, compiled once per batch."""

    domains: list[DomainRule] = field(default_factory=list)
    paths: list[PathRule] = field(default_factory=list)

    @classmethod
    def from_lists(
        cls, domains: Sequence[str] = (), path_patterns: Sequence[str] = ()
    ) -> UrlPolicy:
        return cls(compile_domain_rules(domains), compile_path_rules(path_patterns))

    @classmethod
    def from_params(cls, params: _UrlsSettings | None) -> UrlPolicy:
        """From `params.urls`; None (or a None list in it) gives the starter lists."""
        domains = params.denylist_domains if params is not None else None
        paths = params.denylist_path_patterns if params is not None else None
        return cls.from_lists(
            DEFAULT_DENYLIST_DOMAINS if domains is None else domains,
            DEFAULT_DENYLIST_PATH_PATTERNS if paths is None else paths,
        )

    def check(self, url: str) -> UrlVerdict:
        """Normalise `url`, then apply the denylist; the verdict names the rule that fired."""
        verdict = normalise(url)
        if not verdict.ok:
            return verdict
        parts = urlsplit(verdict.url)
        host = parts.hostname or ""
        for rule in self.domains:
            if rule.matches(host):
                return UrlVerdict(
                    verdict.url, False,
                    f"denylisted domain: {host!r} matches {rule.entry!r} (urls.denylist_domains)",
                    "denylist_domain",
                )  # fmt: skip
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for rule in self.paths:
            if rule.matches(target):
                return UrlVerdict(
                    verdict.url, False,
                    f"denylisted path: {target!r} matches {rule.pattern!r} "
                    "(urls.denylist_path_patterns)",
                    "denylist_path",
                )  # fmt: skip
        return verdict


def clean_manifest(
    rows: Iterable[Mapping[str, Any]], policy: UrlPolicy | _UrlsSettings | None = None
) -> tuple[list[dict], list[dict]]:
    """Split manifest rows into (kept, rejected); kept rows get the normalised URL and its hash,
    rejected rows a `reason`, the `rule` that fired and their url_sha256 too (the warehouse's
    url_outcome key; a duplicate's is its kept URL's). The first occurrence of a URL wins (it
    has the best rank). `policy`: a UrlPolicy, `params.urls`, or None for the starter lists."""
    if not isinstance(policy, UrlPolicy):
        policy = UrlPolicy.from_params(policy)
    kept: list[dict] = []
    rejected: list[dict] = []
    seen: set[str] = set()
    for row in rows:
        verdict = policy.check(str(row.get("image_url") or ""))
        out = dict(row)
        key = url_sha256(verdict.url)  # of the normalised URL when it parses, else the raw one
        if not verdict.ok:
            rejected.append(
                {**out, "url_sha256": key, "reason": verdict.reason, "rule": verdict.rule}
            )
            continue
        if verdict.url in seen:
            rejected.append(
                {**out, "url_sha256": key, "reason": "duplicate url", "rule": DUPLICATE_RULE}
            )
            continue
        seen.add(verdict.url)
        kept.append({**out, "image_url": verdict.url, "url_sha256": key})
    return kept, rejected

"""The downloader's SSRF guard: which addresses a scraped URL may reach, and a network
backend that connects only to vetted addresses within a per-URL wall-time budget.

- only http/https (`check_url`); literal non-public IP addresses are refused up front;
- the backend resolves the host name itself, refuses non-public addresses (loopback,
  private, link-local, CGNAT, multicast, reserved, unspecified, cloud metadata, IPv4
  embedded in IPv6), then connects to exactly that address: no second DNS lookup, so DNS
  rebinding cannot slip a private address in between the check and the connection. Names
  in `allow_hosts` (the local stand-in, tests) skip the address check;
- every socket operation of a URL is clamped to its wall-time budget (`time_budget`), so a
  server trickling one byte a second ends too.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpcore
import httpx

from emotionops.errors import EmotionOpsError

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

Resolver = Callable[[str, int], list[str]]


class DownloadRefused(EmotionOpsError):
    """A URL that must not or cannot be fetched; `str(exc)` is the recorded reason (final)."""


class OverBudget(Exception):
    """The URL's wall-time budget (`max_seconds`) ran out."""


# --- address vetting ---------------------------------------------------------------------
def address_refusal(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why `addr` must not be connected to (None: a public address). IPv4 addresses embedded
    in IPv6 (mapped, compatible, 6to4, Teredo, NAT64) are judged by the IPv4 inside."""
    if addr in METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(addr, ipaddress.IPv6Address):
        inner = _embedded_ipv4(addr)
        if inner is not None:
            why = address_refusal(inner)
            return f"{why}, embedded in IPv6" if why else None
    checks = (
        ("unspecified", addr.is_unspecified),
        ("loopback", addr.is_loopback),
        ("link-local", addr.is_link_local),
        ("multicast", addr.is_multicast),
        ("shared address space (CGNAT)", addr in _CGNAT),
        ("reserved", addr.is_reserved),
        ("private", addr.is_private),
        ("not globally routable", not addr.is_global),
    )
    return next((why for why, hit in checks if hit), None)


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if addr in _NAT64 or (addr in _IPV4_COMPATIBLE and int(addr) > 1):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def system_resolver(host: str, port: int) -> list[str]:
    """All addresses of `host` (deduplicated, resolver order), via the system resolver."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:  # temporary resolver failure: worth a retry
            raise httpcore.ConnectError(f"cannot resolve {host} (temporary)") from exc
        raise DownloadRefused(f"cannot resolve {host}: {exc.strerror}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


#: A host name (or dotted IPv4 address) in an allow-list entry; `_` for internal names.
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


class AllowList:
    """Hosts the downloader may reach although they are not public (the local stand-in,
    tests): `host` allows every port of it, `host:port` (`[v6]:port`) that port only."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.any_port: set[str] = set()
        self.ports: set[tuple[str, int]] = set()
        for entry in entries:
            host, port = parse_allow_entry(entry)
            if port is None:
                self.any_port.add(host)
            else:
                self.ports.add((host, port))

    def allows(self, host: str, port: int) -> bool:
        name = host.lower().rstrip(".").strip("[]")
        return name in self.any_port or (name, port) in self.ports


def parse_allow_entry(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port` or `[v6]:port` -> (host, port or None); ValueError names the entry."""
    text = entry.strip().lower()
    if not text or "/" in text or "@" in text or any(c.isspace() for c in text):
        raise ValueError(f"{entry!r} is not a host or host:port")
    if text.startswith("["):  # [v6] or [v6]:port
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or not _ip(inside) or (rest and not rest.startswith(":")):
            raise ValueError(f"{entry!r} is not a host or host:port")
        host, port_text = inside, rest[1:] if rest else None
    elif text.count(":") > 1:  # a bare IPv6 address: every port
        if not _ip(text):
            raise ValueError(f"{entry!r} is not a host or host:port")
        host, port_text = text, None
    else:
        host, _, port_text = text.partition(":")
        host, port_text = host.rstrip("."), port_text if ":" in text else None
        if not _HOST_NAME.fullmatch(host):
            raise ValueError(f"{entry!r} is not a host or host:port")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{entry!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


def _effective_port(parts: SplitResult) -> int:
    try:
        port = parts.port
    except ValueError as exc:
        raise DownloadRefused(f"malformed port in url: {exc}") from None
    return port or (443 if parts.scheme == "https" else 80)


def check_url(url: str, allow_hosts: AllowList | Iterable[str] = ()) -> None:
    """Refuse up front what needs no network to refuse: non-http(s) schemes, missing hosts and
    literal non-public IP addresses. Host names are vetted when connecting (`GuardedBackend`)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise DownloadRefused(f"malformed url: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise DownloadRefused(f"scheme {parts.scheme!r} not allowed (only http/https)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise DownloadRefused("no host in url")
    allow = allow_hosts if isinstance(allow_hosts, AllowList) else AllowList(allow_hosts)
    if allow.allows(host, _effective_port(parts)):
        return
    addr = _ip(host)
    if addr is not None and (why := address_refusal(addr)):
        raise DownloadRefused(f"non-public address {host} ({why})")


# --- a per-thread wall-time budget ---------------------------------------------------------
_budget = threading.local()


@contextmanager
def time_budget(at: float) -> Iterator[None]:
    """Every socket operation in this thread is clamped to end by `at` (monotonic)."""
    _budget.at = at
    try:
        yield
    finally:
        _budget.at = None


def _clamp(timeout: float | None) -> tuple[float | None, bool]:
    """(timeout to use, whether the budget is what limits it)."""
    at = getattr(_budget, "at", None)
    if at is None:
        return timeout, False
    left = at - time.monotonic()
    if left <= 0:
        raise OverBudget
    if timeout is None or left < timeout:
        return left, True
    return timeout, False


class _BudgetStream(httpcore.NetworkStream):
    """Wraps a socket stream so that no read or write outlives the URL's wall-time budget:
    a server trickling one byte a second never trips the read timeout, but does trip this."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        timeout, limited = _clamp(timeout)
        try:
            return self._inner.read(max_bytes, timeout)
        except httpcore.ReadTimeout:
            if limited:
                raise OverBudget from None
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        timeout, limited = _clamp(timeout)
        try:
            self._inner.write(buffer, timeout)
        except httpcore.WriteTimeout:
            if limited:
                raise OverBudget from None
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):  # type: ignore[no-untyped-def]
        timeout, _ = _clamp(timeout)
        return _BudgetStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    """httpcore network backend that resolves once, vets every address, and connects only to
    a vetted address (no time-of-check/time-of-use gap for DNS rebinding)."""

    def __init__(
        self, allow_hosts: AllowList | Iterable[str] = (), resolver: Resolver | None = None
    ) -> None:
        self.allow = allow_hosts if isinstance(allow_hosts, AllowList) else AllowList(allow_hosts)
        self.resolver = resolver or system_resolver

    def connect_tcp(  # type: ignore[override]
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        name = host.lower().rstrip(".")
        addresses = self.resolver(name, port)
        if not addresses:
            raise DownloadRefused(f"cannot resolve {name}: no addresses")
        if not self.allow.allows(name, port):
            for text in addresses:
                addr = _ip(text)
                why = "not an IP address" if addr is None else address_refusal(addr)
                if why:
                    raise DownloadRefused(f"{name} resolves to non-public address {text} ({why})")
        last: Exception | None = None
        for text in addresses:  # each one vetted above (or the name is allow-listed)
            limit, limited = _clamp(timeout)
            try:
                stream = super().connect_tcp(
                    text.split("%", 1)[0], port, limit, local_address, socket_options
                )
                return _BudgetStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                if limited and isinstance(exc, httpcore.ConnectTimeout):
                    raise OverBudget from None
                last = exc
        assert last is not None
        raise last


class TlsConfigError(EmotionOpsError):
    """The extra CA bundle cannot be read."""


def tls_context(ca_bundle: Path | None = None) -> ssl.SSLContext:
    """Certificates are always verified: the public roots (certifi), plus the PEM file
    `ca_bundle` when given (a private image host, an intercepting proxy, the tests' CA)."""
    context = httpx.create_ssl_context(trust_env=False)
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(
                f"EMOTIONOPS_DOWNLOAD_CA_BUNDLE={ca_bundle}: not a readable PEM CA file ({exc})"
            ) from exc
    return context


class GuardedTransport(httpx.HTTPTransport):
    """httpx transport whose connection pool uses `GuardedBackend`.

    httpx 0.28 has no public `network_backend` argument, so the pool the parent builds is
    replaced by one built the same way with our backend; `__init__` fails loudly if a future
    httpx stops keeping its pool where we expect it. Proxies are never used (`trust_env=False`
    and no `proxy`): a proxy from the environment would connect on our behalf and bypass the
    address checks.
    """

    def __init__(
        self, backend: GuardedBackend, limits: httpx.Limits, ca_bundle: Path | None = None
    ) -> None:
        super().__init__(trust_env=False, limits=limits, http1=True, http2=False)
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            raise RuntimeError("unsupported httpx version: cannot install the SSRF guard")
        self._pool.close()
        self._pool = httpcore.ConnectionPool(
            ssl_context=tls_context(ca_bundle),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=backend,
        )

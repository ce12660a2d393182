"""What a URL that touchflow sends a request to, or puts in a message, may be.

One set of rules for push subscription endpoints (`TOUCHFLOW_PUSH_SERVICE_HOSTS`), tracked links
(`TOUCHFLOW_LINK_DOMAINS`) and the `url` part of push and onsite messages, so the API that accepts an address,
the worker that uses it and the redirect that follows it all judge it the same way.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

PUSH_SERVICE_HOSTS = "TOUCHFLOW_PUSH_SERVICE_HOSTS"
LINK_DOMAINS = "TOUCHFLOW_LINK_DOMAINS"

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# The authority of a URL we act on: a plain host (name, IPv4 or [IPv6]) and an optional port, nothing else.
# No user info, no percent-escapes: nothing that two URL parsers could read as two different hosts.
_AUTHORITY = re.compile(r"(?P<host>[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
# Schemes that are no web address but harmless in a message: a link to them is left as it is, untracked.
_PLAIN_SCHEMES = ("mailto", "tel")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _clean(url: str) -> bool:
    # Control characters and backslashes: browsers drop or reinterpret them (`/\host` is `//host`).
    return url.isprintable() and "\\" not in url


def _split(url: str) -> SplitResult | None:
    if not _clean(url):
        return None
    try:
        return urlsplit(url)
    except ValueError:  # an unbalanced `[` in the host
        return None


def host_of(url: str) -> str | None:
    """The host of an absolute http(s) URL with a plain authority (lower case, no trailing dot), else None.

    None also for a URL with user info (`https://shop.example@evil.example/`), control characters or
    backslashes, or `https:host` without the slashes (which browsers read as `https://host`).
    """
    parts = _split(url)
    if parts is None:
        return None
    found = _AUTHORITY.fullmatch(parts.netloc.lower())
    if parts.scheme not in ("http", "https") or found is None:
        return None
    if found["port"] is not None and not 0 < int(found["port"]) < 65536:
        return None
    host = found["host"]
    if host.startswith("["):
        return host[1:-1] if _is_ip(host[1:-1]) else None
    host = host.removesuffix(".")
    return host if _NAME.fullmatch(host) or _is_ip(host) else None


def site_path(url: str) -> bool:
    """A path on the site itself (`/cart?x=1`); not `//host` nor `/\\host`, another host written as a path."""
    return _clean(url) and url.startswith("/") and not url.startswith("//")


def linkable(url: str) -> bool:
    """Whether a message may link to `url`: an http(s) URL with a plain host, or a path on the site.

    Never `javascript:`, `data:` or `vbscript:`, whatever the case or the spaces and controls around it.
    """
    return host_of(url) is not None or site_path(url)


def safe_link(url: str) -> str:
    """`url` (stripped) when a message may carry it as it is: an http(s) URL with a plain host, a path on
    the site, `mailto:` or `tel:`. Anything else (`javascript:`, `data:`, `//host`) gives "": a dead href."""
    url = url.strip()
    parts = _split(url)
    if linkable(url) or (parts is not None and parts.scheme in _PLAIN_SCHEMES):
        return url
    return ""


@dataclass(frozen=True)
class HostPattern:
    """One entry of a host list: a host name or address, or `*.suffix` (every host under the suffix, not the
    suffix itself); `plain_http` when written `http://host`, which allows plain http besides https."""

    name: str
    wildcard: bool = False
    plain_http: bool = False

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        entry = text.strip().lower()
        plain_http = entry.startswith("http://")
        entry = entry.removeprefix("http://").removeprefix("https://").removesuffix("/").removesuffix(".")
        wildcard = entry.startswith("*.")
        name = entry.removeprefix("*.").removeprefix("[").removesuffix("]")
        if wildcard:
            # A suffix under a top-level domain: not `*.com`, not the end of an address (`*.0.1`).
            valid = bool(_NAME.fullmatch(name)) and "." in name and not name.rsplit(".", 1)[1].isdigit()
        else:
            valid = bool(_NAME.fullmatch(name)) or _is_ip(name)
        if not valid:
            raise ValueError(
                f"{text.strip()!r} is not a host name, an address or a `*.suffix` pattern "
                "(e.g. `push.shop.example`, `10.0.0.5`, `*.push.apple.com`, `http://push.lab.example`)"
            )
        return cls(name, wildcard, plain_http)

    def matches(self, host: str) -> bool:
        if self.wildcard:
            return host.endswith(f".{self.name}") and not _is_ip(host)
        return host == self.name

    def __str__(self) -> str:
        return f"{'http://' if self.plain_http else ''}{'*.' if self.wildcard else ''}{self.name}"


class HostPatterns(tuple[HostPattern, ...]):
    """A comma-separated list of host patterns, parsed once, when the settings load."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: Any) -> HostPatterns:
        if isinstance(value, HostPatterns):
            return value
        items = value.split(",") if isinstance(value, str) else value
        return cls(
            item if isinstance(item, HostPattern) else HostPattern.parse(str(item))
            for item in items
            if isinstance(item, HostPattern) or str(item).strip()
        )

    def find(self, host: str) -> HostPattern | None:
        """The first pattern that `host` (as `host_of` gives it) matches."""
        return next((pattern for pattern in self if pattern.matches(host)), None)

    def __str__(self) -> str:
        return ", ".join(map(str, self))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )


def push_endpoint_problem(endpoint: str, hosts: HostPatterns) -> tuple[str, str] | None:
    """Why touchflow will not send to this push subscription endpoint, as `(code, reason)`, or None.

    `code` is `bad_endpoint` (no URL of a push service) or `host_not_allowed` (its host, or plain http to
    it, is not in TOUCHFLOW_PUSH_SERVICE_HOSTS). The API refuses such an endpoint with a 422, and the worker
    checks again before every send, so a stored subscription whose host is no longer allowed gets no request.
    """
    parts = _split(endpoint)
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        return "bad_endpoint", "must be the https URL of the browser's push service"
    if "@" in parts.netloc:
        return "bad_endpoint", "must not carry a user name or password (`user:pass@` before the host)"
    host = host_of(endpoint)
    if host is None:
        return "bad_endpoint", "must be the https URL of the browser's push service, with a plain host name"
    pattern = hosts.find(host)
    if pattern is None:
        return (
            "host_not_allowed",
            f"{host} is not a push service host: endpoints are taken only on the hosts in "
            f"{PUSH_SERVICE_HOSTS} (by default those of Chrome, Firefox, Safari and Edge); "
            "name a self-hosted push service there",
        )
    if parts.scheme == "http" and not pattern.plain_http:
        return (
            "host_not_allowed",
            f"must be an https URL: plain http only to hosts listed as http://{host} in {PUSH_SERVICE_HOSTS}",
        )
    return None


def link_allowed(url: str, domains: HostPatterns) -> bool:
    """Whether a tracked link may point at `url`: http(s) with a plain host, in `domains` (when not empty)."""
    host = host_of(url)
    return host is not None and (not domains or domains.find(host) is not None)

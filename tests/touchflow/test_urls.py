"""Rules for URLs touchflow sends to or puts in messages: hosts, patterns, the default push services."""

from __future__ import annotations

import pytest

from touchflow.settings import DEFAULT_PUSH_SERVICE_HOSTS
from touchflow.urls import HostPatterns, host_of, linkable, push_endpoint_problem


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://fcm.googleapis.com/fcm/send/dGVzdA:APA91b",  # Chrome, and Chromium-based browsers on FCM
        "https://fcm.googleapis.com/wp/dGVzdA:APA91b",
        "https://jmt17.google.com/fcm/send/dGVzdA",  # Chromium builds without Google's API keys
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAAAB",  # Firefox
        "https://web.push.apple.com/QGuQyavXutnMH3LWqLKgAA",  # Safari, macOS and iOS
        "https://wns2-par02p.notify.windows.com/w/?token=BQYAAAB",  # Edge on Windows
    ],
)
def test_the_default_hosts_take_every_browsers_push_service(endpoint: str) -> None:
    assert push_endpoint_problem(endpoint, DEFAULT_PUSH_SERVICE_HOSTS) is None


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://FCM.googleapis.com./x", "fcm.googleapis.com"),
        ("https://10.0.0.5:8443/x", "10.0.0.5"),
        ("http://[::1]:80/x", "::1"),
        ("https://user@shop.example/", None),
        ("https://shop.example%2eevil.example/", None),
        ("https://shop.example:99999/", None),
        ("https:shop.example", None),
        ("https://shop.example\\@evil.example/", None),
        ("https://shop.exa\tmple/", None),
        ("https://[not-ip]/", None),
        ("ftp://shop.example/", None),
    ],
)
def test_host_of_reads_plain_hosts_only(url: str, host: str | None) -> None:
    assert host_of(url) == host


@pytest.mark.parametrize(
    ("patterns", "host", "matched"),
    [
        ("push.shop.example", "push.shop.example", "push.shop.example"),
        ("push.shop.example", "a.push.shop.example", None),
        ("*.push.apple.com", "web.push.apple.com", "*.push.apple.com"),
        ("*.push.apple.com", "push.apple.com", None),
        ("*.push.apple.com", "evilpush.apple.com", None),
        ("http://127.0.0.1, *.x.example", "127.0.0.1", "http://127.0.0.1"),
        ("[::1]", "::1", "::1"),
        ("  PUSH.Shop.Example. ,", "push.shop.example", "push.shop.example"),
    ],
)
def test_host_patterns(patterns: str, host: str, matched: str | None) -> None:
    found = HostPatterns.parse(patterns).find(host)
    assert (str(found) if found else None) == matched


@pytest.mark.parametrize(
    "entry", ["*", "*.com", "*.0.0.1", "push shop", "https://push.shop.example/path", "a..b"]
)
def test_a_bad_host_pattern_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        HostPatterns.parse(entry)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://shop.example/cart", True),
        ("/cart?x=1", True),
        ("javascript:alert(1)", False),
        ("//evil.example/", False),
        ("/\\evil.example/", False),
        ("cart", False),
    ],
)
def test_linkable(url: str, ok: bool) -> None:
    assert linkable(url) is ok

"""Templates: languages, money, and customer data that must never run or inject markup."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from touchflow.rendering import Renderer, TemplateMissing, language_chain, money, number


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "shown"),
    [
        (1250000, "VND", "vi", "1.250.000\xa0₫"),
        (12.5, "USD", "en", "$12.50"),
        ("99.9", "usd", "vi", "99,90\xa0US$"),
        (1250000, "VND", "en", "₫1,250,000"),
        ("not a number", "VND", "vi", "not a number"),
    ],
)
def test_money_is_formatted_for_the_locale(amount: object, currency: str, locale: str, shown: str) -> None:
    assert money(amount, currency, locale) == shown


@pytest.mark.parametrize(
    ("amount", "locale", "shown"),
    [(1250000, "vi", "1.250.000"), ("1500.5", "en", "1,500.5"), ("", "vi", ""), ("n/a", "en", "n/a")],
)
def test_number_is_formatted_for_the_locale_and_shows_a_non_number_as_is(
    amount: object, locale: str, shown: str
) -> None:
    assert number(amount, locale) == shown


@pytest.mark.parametrize(
    ("locale", "chain"),
    [
        ("vi-VN", ["vi-vn", "vi", "en"]),
        ("vi_VN", ["vi-vn", "vi", "en"]),
        ("en", ["en"]),
        (None, ["en"]),
    ],
)
def test_language_chain_goes_from_specific_to_default(locale: str | None, chain: list[str]) -> None:
    assert language_chain(locale, "en") == chain


def context(**customer: object) -> dict[str, object]:
    return {
        "brand": "Shop",
        "customer": {"id": "c1", "first_name": "", "attributes": {}, **customer},
        "event": {},
        "data": {},
        "public_url": "https://shop.example",
        "unsubscribe_url": "https://shop.example/unsubscribe/t",
    }


def test_the_customers_language_then_the_default() -> None:
    renderer = Renderer()
    language, parts = renderer.render("welcome", "welcome", "email", "vi-VN", context(first_name="An"))
    assert language == "vi"
    assert parts["subject"] == "Chào mừng bạn đến với Shop, An!"
    assert "Xin chào An!" in parts["text"] and "<h1" in parts["html"]
    language, _ = renderer.render("welcome", "welcome", "email", "fr", context())
    assert language == "en"


def test_hostile_names_are_data_not_code_or_markup() -> None:
    renderer = Renderer()
    name = "<script>alert(1)</script>{{ 7*7 }}"
    _, parts = renderer.render("welcome", "welcome", "email", "en", context(first_name=name))
    assert "<script>" not in parts["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;{{ 7*7 }}" in parts["html"]
    assert "49" not in parts["html"] and "49" not in parts["text"]
    assert "{{ 7*7 }}" in parts["subject"]


def test_templates_cannot_reach_python_internals(tmp_path: Path) -> None:
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "step.email.en.txt").write_text(
        "{% block subject %}x{% endblock %}{{ customer.__class__.__mro__[1].__subclasses__() }}"
    )
    renderer = Renderer([tmp_path])
    with pytest.raises(SecurityError):
        renderer.render("evil", "step", "email", "en", context())


def test_a_missing_template_names_what_was_looked_for() -> None:
    with pytest.raises(TemplateMissing, match=r"welcome/nope\.email"):
        Renderer().render("welcome", "nope", "email", "vi", context())


@pytest.mark.parametrize(
    ("journey", "step", "extra", "params"),
    [
        (
            "post_purchase",
            "order_confirmation_zns",
            {"event": {"order_id": "O-7", "total": 1250000, "currency": "VND"}},
            {"param_customer_name": "Lan", "param_order_code": "O-7", "param_total": "1.250.000\xa0₫"},
        ),
        (
            "abandoned_cart",
            "cart_reminder_2",
            {"event": {"items": [{"name": "a"}, {"name": "b"}], "total": 99000, "currency": "VND"}},
            {"param_item_count": "2", "param_cart_total": "99.000\xa0₫"},
        ),
        (
            "post_purchase",
            "coupon",
            {
                "coupon": {
                    "code": "TF-ABCD",
                    "value": 10,
                    "unit": "percent",
                    "expires_at": __import__("datetime").datetime(2026, 12, 31),
                }
            },
            {"param_coupon_code": "TF-ABCD", "param_coupon_value": "10%", "param_expiry_date": "31/12/2026"},
        ),
        (
            "loyalty",
            "points_expiring",
            {"data": {"expiring_points": 1200, "points_expire_at": "2026-12-31T00:00:00+00:00"}},
            {"param_expiring_points": "1.200", "param_expiry_date": "31/12/2026"},
        ),
    ],
)
def test_built_in_zns_templates_take_their_id_from_settings(
    journey: str, step: str, extra: dict[str, object], params: dict[str, str]
) -> None:
    values = context(first_name="Lan") | extra | {"zalo_template_id": "231245"}
    _, parts = Renderer().render(journey, step, "zalo_zns", "vi", values)
    assert parts["template_id"] == "231245"
    assert {name: parts[name] for name in params} == params

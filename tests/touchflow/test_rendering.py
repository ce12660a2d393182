"""Templates: languages, money, customer data that must never run or inject markup, and broken templates."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NoReturn

import pytest
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError

from touchflow.rendering import (
    Renderer,
    TemplateBroken,
    TemplateMissing,
    language_chain,
    money,
    number,
    zns_date,
)


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
    vi = renderer.render("welcome", "welcome", "email", "vi-VN", context(first_name="An"))
    assert (vi.language, vi.wanted, vi.fallback) == ("vi", "vi-vn", False)
    assert vi.parts["subject"] == "Chào mừng bạn đến với Shop, An!"
    assert "Xin chào An!" in vi.parts["text"] and "<h1" in vi.parts["html"]
    assert vi.files == ("welcome/welcome.email.vi.html", "welcome/welcome.email.vi.txt")


@pytest.mark.parametrize(
    ("locale", "language", "fallback"),
    [
        ("fr", "en", True),  # no French template: the default language stands in, and says so
        ("fr-CA", "en", True),
        ("vi", "vi", False),
        ("en-US", "en", False),  # English is the customer's own language, not a fallback
        (None, "en", False),  # a customer without a language wants none in particular
    ],
)
def test_a_fallback_to_the_default_language_is_reported(
    locale: str | None, language: str, fallback: bool
) -> None:
    rendered = Renderer().render("welcome", "welcome", "email", locale, context())
    assert (rendered.language, rendered.fallback) == (language, fallback)


def test_hostile_names_are_data_not_code_or_markup() -> None:
    renderer = Renderer()
    name = "<script>alert(1)</script>{{ 7*7 }}"
    parts = renderer.render("welcome", "welcome", "email", "en", context(first_name=name)).parts
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
    with pytest.raises(TemplateBroken) as broken:
        renderer.render("evil", "step", "email", "en", context())
    assert isinstance(broken.value.error, SecurityError)


@pytest.mark.parametrize(
    ("link", "shown"),
    [
        ("javascript:alert(1)", ""),
        ("data:text/html,hi", ""),
        ("//evil.example/x", ""),
        ("https://shop.example/x", "https://shop.example/x"),  # outside a delivery: a link, untracked
        ("/cart", "/cart"),
    ],
)
def test_track_outside_a_delivery_leaves_out_what_is_no_web_link(
    tmp_path: Path, link: str, shown: str
) -> None:
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "step.email.en.html").write_text(
        '{% block subject %}x{% endblock %}<a href="{{ track(event.link) }}">go</a>'
    )
    parts = Renderer([tmp_path]).render(
        "links", "step", "email", "en", {**context(), "event": {"link": link}}
    )
    assert parts.parts["html"].endswith(f'<a href="{shown}">go</a>')


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
                    "expires_at": datetime(2026, 12, 31),
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
    parts = Renderer().render(journey, step, "zalo_zns", "vi", values).parts
    assert parts["template_id"] == "231245"
    assert {name: parts[name] for name in params} == params


ZNS_STEPS = [
    ("post_purchase", "order_confirmation_zns", {"event": {"order_id": "O-7", "total": 10}}),
    ("abandoned_cart", "cart_reminder_2", {"event": {"items": [], "total": 10}}),
    (
        "post_purchase",
        "coupon",
        {"coupon": {"code": "TF-ABCD", "value": 10, "unit": "percent", "expires_at": datetime(2026, 12, 31)}},
    ),
    ("loyalty", "points_expiring", {"data": {"expiring_points": 1, "points_expire_at": "2026-12-31"}}),
]


@pytest.mark.parametrize(("locale", "greeting"), [("vi", "Quý khách"), ("en", "Customer")])
@pytest.mark.parametrize(("journey", "step", "extra"), ZNS_STEPS)
def test_a_zns_customer_name_is_never_the_internal_customer_id(
    journey: str, step: str, extra: dict[str, object], locale: str, greeting: str
) -> None:
    values = context(id="cust-8f3a2c") | extra | {"zalo_template_id": "231245"}
    parts = Renderer().render(journey, step, "zalo_zns", locale, values).parts
    assert parts["param_customer_name"] == greeting


@pytest.mark.parametrize("locale", ["vi", "en"])
@pytest.mark.parametrize(("journey", "step", "extra"), [s for s in ZNS_STEPS if "expir" in str(s[2])])
def test_zns_dates_are_day_month_year_in_every_language(
    journey: str, step: str, extra: dict[str, object], locale: str
) -> None:
    values = context(first_name="Lan") | extra | {"zalo_template_id": "231245"}
    parts = Renderer().render(journey, step, "zalo_zns", locale, values).parts
    assert parts["param_expiry_date"] == "31/12/2026"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (datetime(2026, 12, 31, 23, 0), "31/12/2026"),  # naive: the day as given
        (datetime(2026, 12, 31, 17, 30, tzinfo=UTC), "01/01/2027"),  # 00:30 in Vietnam
        (date(2026, 1, 2), "02/01/2026"),
        ("2026-01-02", "02/01/2026"),
        ("2026-01-02T20:00:00+00:00", "03/01/2026"),
        ("31/12/2026", "31/12/2026"),  # not ISO: shown as given (and already right)
        ("soon", "soon"),  # shown as given; the zalo_zns channel refuses it by name
        (None, "None"),
        (12, "12"),
    ],
)
def test_zns_date_never_raises(value: object, shown: str) -> None:
    assert zns_date(value) == shown


def test_zns_date_takes_the_customers_zone() -> None:
    moment = datetime(2026, 12, 31, 17, 30, tzinfo=UTC)
    assert zns_date(moment, "Europe/Paris") == "31/12/2026"
    assert zns_date(moment, "Not/AZone") == "31/12/2026"  # an unknown zone: the day in the time's own zone


def _boom(value: object) -> NoReturn:
    raise TypeError(f"cannot use {value}")  # a filter's error, quoting the customer's data


@pytest.mark.parametrize(
    ("source", "error", "where"),
    [
        ("{% block subject %}Hi{% endblock %}\nline 2\n{{ 1 // 0 }}", ZeroDivisionError, "line 3"),
        ("{% block subject %}{{ customer.first_name | boom }}{% endblock %}", TypeError, "line 1"),
        ("{% block subject %}Hi{% endblock %}\n{{ customer.nickname }}", UndefinedError, "line 2"),
        ("{% if %}", TemplateSyntaxError, "line 1"),
    ],
)
def test_a_template_that_raises_is_broken_and_names_its_file_and_line(
    tmp_path: Path, source: str, error: type[Exception], where: str
) -> None:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "step.email.en.txt").write_text(source)
    renderer = Renderer([tmp_path])
    renderer.env.filters["boom"] = _boom
    with pytest.raises(TemplateBroken) as broken:
        renderer.render("shop", "step", "email", "en", context(first_name="Lan"))
    assert isinstance(broken.value.error, error) and broken.value.__cause__ is broken.value.error
    assert broken.value.template == "shop/step.email.en.txt"
    assert str(broken.value).startswith(f"shop/step.email.en.txt {where} raised {error.__name__}")
    assert "Lan" not in str(broken.value)  # only jinja2's own messages, which describe the template


def test_an_error_in_a_layout_names_the_template_and_the_layout(tmp_path: Path) -> None:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "base.html").write_text("<p>\n{{ 1 // 0 }}</p>{% block body %}{% endblock %}")
    (tmp_path / "shop" / "step.email.en.html").write_text('{% extends "shop/base.html" %}')
    with pytest.raises(TemplateBroken, match=r"^shop/step\.email\.en\.html \(shop/base\.html line 2\)"):
        Renderer([tmp_path]).render("shop", "step", "email", "en", context())


async def test_cancelling_a_render_is_not_a_broken_template(tmp_path: Path) -> None:
    def cancel(value: object) -> NoReturn:
        raise asyncio.CancelledError

    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "step.email.en.txt").write_text("{{ 1 | cancel }}")
    renderer = Renderer([tmp_path])
    renderer.env.filters["cancel"] = cancel
    with pytest.raises(asyncio.CancelledError):
        renderer.render("shop", "step", "email", "en", context())


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "shown"),
    [
        ("lots", "VND", "vi", "lots"),
        (1e100, "USD", "en", "1e+100"),
        (5, 5, "en", "5"),
        (5, "VND", "xx", "5"),
        (float("nan"), "VND", "en", "nan"),
        (12, None, "en", "12"),
    ],
)
def test_money_shows_an_odd_value_as_given_and_never_raises(
    amount: object, currency: object, locale: str, shown: str
) -> None:
    assert money(amount, currency, locale) == shown  # type: ignore[arg-type]


def test_number_never_raises() -> None:
    assert [number("lots"), number(float("inf")), number(3, "zz")] == ["lots", "inf", "3"]


def test_inline_content_renders_per_language_and_escapes_only_html() -> None:
    message = Renderer(default_locale="en").inline(
        "sale.email",
        {
            "vi": {"subject": "Chào {{ name }}", "html": "<p>{{ name }}</p>"},
            "en": {"subject": "Hi {{ name }}", "html": "<p>{{ name }}</p>"},
        },
    )
    vietnamese = message.render("vi-VN", {"name": "<An>"})
    assert vietnamese.parts == {"subject": "Chào <An>", "html": "<p>&lt;An&gt;</p>"}
    assert (vietnamese.language, vietnamese.fallback) == ("vi", False)
    french = message.render("fr", {"name": "Zoé"})
    assert (french.parts["subject"], french.language, french.fallback) == ("Hi Zoé", "en", True)

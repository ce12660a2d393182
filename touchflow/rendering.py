"""Message templates: Jinja2 in its sandbox, autoescaped HTML, one file per step, channel and language.

Files live at `templates/<journey>/<step>.<channel>.<locale>.<ext>` (the built-in `templates` package, or
`TOUCHFLOW_TEMPLATES_DIR` first). A template's full output is its `html` or `text` part (by extension); each
top-level block it defines (`subject`, `title`, `body`, `url`, ...) is also rendered alone as that part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from babel.numbers import format_currency, format_decimal
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

import touchflow.templates as builtin_templates

_BABEL_LOCALES = {"vi": "vi_VN", "en": "en_US"}
_EXTENSIONS = ("html", "txt")


class TemplateMissing(LookupError):
    """No template for this step and channel in any language we could use."""


def _babel_locale(locale: str) -> str:
    return _BABEL_LOCALES.get(locale, locale.replace("-", "_"))


def money(amount: Any, currency: str = "VND", locale: str = "en") -> str:
    """`1250000, "VND", "vi"` → `1.250.000 ₫`; `12.5, "USD", "en"` → `$12.50`."""
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return str(amount)
    return str(format_currency(value, currency.upper(), locale=_babel_locale(locale)))


def number(amount: Any, locale: str = "en") -> str:
    """`1250000, "vi"` → `1.250.000`; like `money`, a value that is not a number is shown as it is."""
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return str(amount)
    return str(format_decimal(value, locale=_babel_locale(locale)))


def language_chain(locale: str | None, default: str) -> list[str]:
    """`vi-VN` → [`vi-vn`, `vi`, default]: most specific first, without repeats."""
    chain: list[str] = []
    if locale:
        tag = locale.lower().replace("_", "-")
        chain += [tag, tag.split("-")[0]]
    chain.append(default)
    return list(dict.fromkeys(chain))


class Renderer:
    def __init__(self, extra_dirs: Sequence[Path] = (), default_locale: str = "en") -> None:
        """`extra_dirs` are searched first, in order (TOUCHFLOW_TEMPLATES_DIR, the user's journey modules)."""
        loaders: list[BaseLoader] = [FileSystemLoader(str(folder)) for folder in extra_dirs]
        loaders.append(FileSystemLoader(str(Path(builtin_templates.__file__).parent)))
        self.default_locale = default_locale
        self.env = ImmutableSandboxedEnvironment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["money"] = money
        self.env.filters["number"] = number
        # What a message's own context overrides: untracked links and no pixel outside a delivery.
        self.env.globals["track"] = str
        self.env.globals["open_pixel_url"] = None

    def render(
        self,
        journey: str,
        step: str,
        channel: str,
        locale: str | None,
        context: Mapping[str, Any],
    ) -> tuple[str, dict[str, str]]:
        """Render every file of the step for the first language that has one; returns (language, parts)."""
        for language in language_chain(locale, self.default_locale):
            parts: dict[str, str] = {}
            for ext in _EXTENSIONS:
                name = f"{journey}/{step}.{channel}.{language}.{ext}"
                try:
                    template = self.env.get_template(name)
                except TemplateNotFound:
                    continue
                values = {**context, "locale": language}
                parts["html" if ext == "html" else "text"] = template.render(values).strip()
                for block, render_block in template.blocks.items():
                    block_context = template.new_context(values)
                    parts.setdefault(block, "".join(render_block(block_context)).strip())
            if parts:
                return language, parts
        raise TemplateMissing(
            f"no template {journey}/{step}.{channel}.<locale>.(html|txt) for "
            f"{language_chain(locale, self.default_locale)}"
        )

"""Message templates: Jinja2 in its sandbox, autoescaped HTML, one file per step, channel and language.

Files live at `templates/<journey>/<step>.<channel>.<locale>.<ext>` (the built-in `templates` package, or
`TOUCHFLOW_TEMPLATES_DIR` first). A template's full output is its `html` or `text` part (by extension); each
top-level block it defines (`subject`, `title`, `body`, `url`, ...) is also rendered alone as that part.
A template that is missing or raises while rendering is a `TemplateUnusable` naming the file: it will not mend
itself, so the caller treats it as permanent for that channel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.numbers import format_currency, format_decimal
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

import touchflow.templates as builtin_templates
from touchflow.errors import TouchflowError
from touchflow.urls import safe_link

_BABEL_LOCALES = {"vi": "vi_VN", "en": "en_US"}
_EXTENSIONS = ("html", "txt")
_WHOLE = {"html": "html", "txt": "text"}  # the part a file's whole output is, by its extension


class TemplateUnusable(TouchflowError):
    """A step's template cannot give a message for this channel; someone has to fix a file."""


class TemplateMissing(TemplateUnusable, LookupError):
    """No template for this step and channel in any language we could use."""


class TemplateBroken(TemplateUnusable):
    """A template raised while loading or rendering (a syntax error, an undefined name, `1 // 0`, a filter's
    TypeError). `template` is its name (`<journey>/<step>.<channel>.<locale>.<ext>`), `line` where it broke
    (in that file or a layout it extends), `error` what was raised (also the `__cause__`)."""

    def __init__(self, template: str, error: Exception, line: str | None = None) -> None:
        """`line` is `<file> line <n>`, the innermost template line the error went through."""
        self.template = template
        self.error = error
        self.line = line
        # jinja2's own messages describe the template (an undefined name, a syntax error); any other
        # exception's message may quote the customer's data, which must stay out of logs and histories.
        detail = f": {error}" if isinstance(error, TemplateError) else ""
        where = template
        if line:
            where = line if line.startswith(f"{template} ") else f"{template} ({line})"
        super().__init__(f"{where} raised {type(error).__name__}{detail}")


@dataclass(frozen=True)
class Rendered:
    """A step's template rendered for one channel.

    `language` is the one used; `fallback` says the customer has a language of their own (`wanted`) and no
    template was found in it, so another (the default) was used. `files` are the template names rendered.
    """

    language: str
    parts: dict[str, str]
    files: tuple[str, ...]
    wanted: str | None = None
    fallback: bool = False

    def fix(self, part: str) -> str:
        """What to change so that the template yields `part` (for a reason an operator reads)."""
        stem = self.files[0].rsplit(".", 1)[0]
        for ext, whole in _WHOLE.items():
            if part == whole:
                name = f"{stem}.{ext}"
                return f"{name} renders empty" if name in self.files else f"add {name}"
        return f"add a non-empty {{% block {part} %}} to {' or '.join(self.files)}"


@dataclass(frozen=True)
class PerLanguage:
    """A context value that depends on the language a template is rendered in (`render` picks it).

    `values` by language tag (`vi`, `vi-vn`); a tag without its own value takes its base language's
    (`vi-vn` → `vi`), then `default`.
    """

    values: Mapping[str, Any]
    default: Any = ""

    def pick(self, language: str) -> Any:
        tag = language.lower()
        for candidate in (tag, tag.split("-")[0]):
            if candidate in self.values:
                return self.values[candidate]
        return self.default


def _babel_locale(locale: str) -> str:
    return _BABEL_LOCALES.get(locale, locale.replace("-", "_"))


def money(amount: Any, currency: str = "VND", locale: str = "en") -> str:
    """`1250000, "VND", "vi"` → `1.250.000 ₫`; `12.5, "USD", "en"` → `$12.50`."""
    # Event properties are untrusted: an odd amount, currency or locale is shown as given, never raised on.
    as_given = str(amount)
    code = str(currency).upper()
    if not (len(code) == 3 and code.isalpha()):
        return as_given
    try:
        value = Decimal(str(amount))
        if not value.is_finite():
            return as_given
        return str(format_currency(value, code, locale=_babel_locale(str(locale))))
    except Exception:  # babel's unknown locales, decimal's overflows: a filter must never fail a message
        return as_given


def number(amount: Any, locale: str = "en") -> str:
    """`1250000, "vi"` → `1.250.000`; like `money`, a value that is not a number is shown as it is."""
    try:
        value = Decimal(str(amount))
        if not value.is_finite():
            return str(amount)
        return str(format_decimal(value, locale=_babel_locale(str(locale))))
    except Exception:  # an unknown locale, an overflow: shown as given
        return str(amount)


def zns_date(value: Any, zone: str = "Asia/Ho_Chi_Minh") -> str:
    """`dd/mm/yyyy`, the date form Zalo's ZNS parameters take in every language.

    Takes a date, a datetime or an ISO 8601 string; an aware time is shown on the clock of `zone` (Vietnam
    unless told). Anything else is shown as given: the zalo_zns channel then refuses it by name, before Zalo
    would (-1124).
    """
    moment: date | datetime | None = value if isinstance(value, date) else None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if moment is None:
        return str(value)
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        # An unknown zone, or a time at the edge of time: the day as it was given.
        with contextlib.suppress(ValueError, LookupError, OverflowError):
            moment = moment.astimezone(ZoneInfo(str(zone)))
    return moment.strftime("%d/%m/%Y")


def customer_languages(locale: str | None) -> list[str]:
    """`vi-VN` → [`vi-vn`, `vi`]: the customer's own languages, most specific first; none without a locale."""
    if not locale:
        return []
    tag = locale.lower().replace("_", "-")
    return list(dict.fromkeys([tag, tag.split("-")[0]]))


def language_chain(locale: str | None, default: str) -> list[str]:
    """`vi-VN` → [`vi-vn`, `vi`, default]: most specific first, without repeats."""
    return list(dict.fromkeys([*customer_languages(locale), default]))


class Renderer:
    def __init__(self, extra_dirs: Sequence[Path] = (), default_locale: str = "en") -> None:
        """`extra_dirs` are searched first, in order (TOUCHFLOW_TEMPLATES_DIR, the user's journey modules)."""
        self.roots = [*(Path(folder) for folder in extra_dirs), Path(builtin_templates.__file__).parent]
        loaders: list[BaseLoader] = [FileSystemLoader(str(folder)) for folder in self.roots]
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
        self.env.filters["zns_date"] = zns_date
        # What a message's own context overrides: untracked links and no pixel outside a delivery. Even
        # untracked, `track` never gives a `javascript:` or `data:` link (touchflow.urls.safe_link).
        self.env.globals["track"] = lambda url: safe_link(str(url))
        self.env.globals["open_pixel_url"] = None

    def render(
        self,
        journey: str,
        step: str,
        channel: str,
        locale: str | None,
        context: Mapping[str, Any],
    ) -> Rendered:
        """Render every file of the step for the first language that has one.

        Raises `TemplateMissing` when no language has a file, `TemplateBroken` when one raises.
        """
        own = customer_languages(locale)
        chain = language_chain(locale, self.default_locale)
        for language in chain:
            parts: dict[str, str] = {}
            files: list[str] = []
            for ext in _EXTENSIONS:
                name = f"{journey}/{step}.{channel}.{language}.{ext}"
                try:
                    template = self.env.get_template(name)
                except TemplateNotFound:
                    continue
                except Exception as exc:  # a syntax error (a CancelledError, a BaseException, goes through)
                    raise TemplateBroken(name, exc, self._where(exc)) from exc
                files.append(name)
                values = {
                    **{k: v.pick(language) if isinstance(v, PerLanguage) else v for k, v in context.items()},
                    "locale": language,
                }
                try:
                    self._render_file(template, _WHOLE[ext], values, parts)
                except Exception as exc:  # anything a template can raise: it will raise it again
                    raise TemplateBroken(name, exc, self._where(exc)) from exc
            if files:
                return Rendered(
                    language, parts, tuple(files), own[0] if own else None, bool(own) and language not in own
                )
        raise TemplateMissing(f"no template {journey}/{step}.{channel}.<locale>.(html|txt) for {chain}")

    def inline(self, name: str, content: Mapping[str, Any]) -> InlineMessage:
        """A message given inline (a broadcast's `content` for one channel) instead of in files:
        `{part: text}` or `{language: {part: text}}`, each part Jinja in this same sandbox, compiled once.

        Raises `TemplateBroken` naming the part when one does not compile.
        """
        per_language = content if all(isinstance(v, Mapping) for v in content.values()) else {"": content}
        compiled: dict[str, dict[str, Template]] = {}
        for language, parts in per_language.items():
            compiled[language.lower()] = {}
            for part, text in parts.items():
                where = f"{name}.{language}.{part}" if language else f"{name}.{part}"
                # `html` is escaped as the HTML files are; the other parts are plain text.
                source = (
                    f"{{% autoescape true %}}{text}{{% endautoescape %}}" if part == "html" else str(text)
                )
                try:
                    compiled[language.lower()][part] = self.env.from_string(source)
                except Exception as exc:
                    raise TemplateBroken(where, exc) from exc
        return InlineMessage(name, compiled, self.default_locale)

    def _render_file(
        self, template: Template, whole: str, values: dict[str, Any], parts: dict[str, str]
    ) -> None:
        parts[whole] = template.render(values).strip()
        for block, render_block in template.blocks.items():
            try:
                text = "".join(render_block(template.new_context(values))).strip()
            except Exception:
                # As `render` does: the traceback points at the template's own lines, not compiled code.
                self.env.handle_exception()
            parts.setdefault(block, text)

    def _where(self, exc: Exception) -> str | None:
        """`<template> line N` of the innermost template frame of the error, named as the loader names it.

        jinja2 rewrites a render's traceback so that template frames carry `__jinja_exception__` and the
        template's file and line; without them (another jinja2) the message just has no line.
        """
        found: str | None = None
        tb = exc.__traceback__
        while tb is not None:
            scope = tb.tb_frame.f_globals
            if "__jinja_exception__" in scope:
                found = f"{self._name(str(scope['__file__']))} line {tb.tb_lineno}"
            tb = tb.tb_next
        return found

    def _name(self, filename: str) -> str:
        for root in self.roots:
            if Path(filename).is_relative_to(root):
                return Path(filename).relative_to(root).as_posix()
        return filename


@dataclass(frozen=True)
class InlineMessage:
    """Inline content for one channel, compiled (`Renderer.inline`): rendered per customer like a template."""

    name: str
    parts: Mapping[str, Mapping[str, Template]]
    default_locale: str

    def render(self, locale: str | None, context: Mapping[str, Any]) -> Rendered:
        own = customer_languages(locale)
        chain = language_chain(locale, self.default_locale)
        language = next((lang for lang in chain if lang in self.parts), None)
        fallback = False
        if language is None:
            # Content without languages is everyone's; else the first language given stands in.
            language = "" if "" in self.parts else next(iter(self.parts))
            fallback = language != ""
        templates = self.parts[language]
        spoken = language or (own[0] if own else self.default_locale)
        values = {
            **{k: v.pick(spoken) if isinstance(v, PerLanguage) else v for k, v in context.items()},
            "locale": spoken,
        }
        parts: dict[str, str] = {}
        for part, template in templates.items():
            try:
                parts[part] = template.render(values).strip()
            except Exception as exc:  # anything a template can raise: it will raise it again
                raise TemplateBroken(f"{self.name}.{part}", exc) from exc
        files = tuple(f"{self.name}.{part}" for part in templates)
        return Rendered(
            spoken, parts, files, own[0] if own else None, fallback or (bool(own) and spoken not in own)
        )

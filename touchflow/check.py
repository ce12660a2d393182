"""`touchflow check`: the mistakes a journey would otherwise show only at delivery, found before it starts.

    problems = check(registry, settings)       # pure: nothing is sent, started or written

Checked: the channels of every step; the templates of every step, channel and language in use
(present, compiling, rendering with a sample context, giving the parts the channel needs); the journey's
settings; events that both start and end a journey; the segments of the journey modules (every segment
they name exists, none refers to itself) and the segments journeys start or end on. `worker` and `dev`
run it at start and refuse to start on an error.
"""

from __future__ import annotations

import difflib
import inspect
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from jinja2 import ChainableUndefined, TemplateSyntaxError

import touchflow.templates as builtin_templates
from touchflow.channels import REGISTRY as CHANNELS
from touchflow.channels import Channel
from touchflow.channels.zalo_zns import ZaloZns, template_id_for
from touchflow.errors import ConfigurationError, InvalidInput
from touchflow.rendering import Renderer, TemplateBroken, language_chain
from touchflow.segments import ENTERED_PREFIX, EXITED_PREFIX, LifecycleRules, check_definitions
from touchflow.settings import Settings
from touchflow.worker import template_dirs
from touchflow.workflows.base import JourneySpec, Step
from touchflow.workflows.registry import BUILTIN_JOURNEYS, Registry, RegistryError, load_registry

Level = Literal["error", "warning"]
# What a template file's extension gives (touchflow.rendering): its whole output is this part.
_EXTENSION_PART = {"html": "html", "txt": "text"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong, said so that the person who reads it knows where to look and what to do."""

    level: Level
    journey: str | None
    step: str | None
    message: str
    fix: str = ""
    file: str | None = None
    line: int | None = None

    @property
    def where(self) -> str:
        if self.journey and self.step:
            return f"journey {self.journey}, step {self.step}"
        return f"journey {self.journey}" if self.journey else ""

    def as_line(self) -> str:
        text = f"{self.level}: {self.where + ': ' if self.where else ''}{self.message}"
        if self.file:
            text += f" (in {self.file}{f':{self.line}' if self.line else ''})"
        return text + (f"; fix: {self.fix}" if self.fix else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CheckFailed(ConfigurationError):
    """`touchflow check` found errors: the process refuses to start. The message lists them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        errors = [problem for problem in self.problems if problem.level == "error"]
        lines = "\n".join(f"  {problem.as_line()}" for problem in errors)
        super().__init__(f"{_count(len(errors), 'error')} in the journeys; not starting:\n{lines}")


def check(registry: Registry, settings: Settings) -> list[Problem]:
    """Every problem of the registry's journeys and their templates, errors and warnings, by journey."""
    templates = _Templates(settings, registry)
    problems: list[Problem] = []
    for spec in registry.values():
        problems += _check_journey(spec, registry)
        for step in spec.steps:
            problems += _check_channels(spec, step)
        problems += templates.check(spec)
    problems += _check_segments(registry, settings)
    return problems


def _check_segments(registry: Registry, settings: Settings) -> Iterator[Problem]:
    declared = {d.name: d for d in LifecycleRules.from_settings(settings).definitions}
    declared.update(registry.segments)
    try:
        check_definitions(declared)
    except InvalidInput as exc:
        fix = "a declared segment may name declared ones and lifecycle stages, not ones made over the API"
        yield Problem("error", None, None, str(exc), fix)
    for spec in registry.values():
        for event in (*spec.starts_on, *spec.ends_on):
            for prefix in (ENTERED_PREFIX, EXITED_PREFIX):
                name = event[len(prefix) :] if event.startswith(prefix) else None
                if name is not None and name not in declared:
                    message = f"{event} names segment {name!r}, which no journey module declares"
                    fix = "fine if it is made over the API (POST /v1/segments); otherwise check the name"
                    yield Problem("warning", spec.name, None, message, fix)


def load_and_check(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> tuple[Registry | None, list[Problem]]:
    """The registry and its problems; a registry that cannot be loaded is one error, not a traceback."""
    try:
        registry = load_registry(settings, environ)
    except RegistryError as exc:
        return None, [Problem("error", None, None, str(exc))]
    return registry, check(registry, settings)


def has_errors(problems: Sequence[Problem]) -> bool:
    return any(problem.level == "error" for problem in problems)


def summary(registry: Registry | None, problems: Sequence[Problem]) -> str:
    errors = sum(problem.level == "error" for problem in problems)
    warnings = len(problems) - errors
    if registry is None:
        scope = "the journeys could not be loaded"
    else:
        steps = sum(len(spec.steps) for spec in registry.values())
        scope = f"{_count(len(registry), 'journey')}, {_count(steps, 'step')}"
    if not problems:
        return f"touchflow check: {scope}: no problems"
    return f"touchflow check: {_count(errors, 'error')}, {_count(warnings, 'warning')} ({scope})"


# -- the journey and its steps ------------------------------------------------------------------------------


def _check_journey(spec: JourneySpec, registry: Registry) -> Iterator[Problem]:
    module = _module_file(spec)
    if not spec.steps:
        yield Problem(
            "warning",
            spec.name,
            None,
            "the journey declares no Step, so there is nothing to check for it (a plan that builds its steps "
            "itself is not checked)",
            "declare each step as a class attribute: `name = Step(via=(...), stage=Stage....)`",
            module,
        )
    exits = [name for name in spec.ends_on if name not in spec.goals]
    for event in spec.starts_on:
        if event in exits:
            yield Problem(
                "error",
                spec.name,
                None,
                f"{event!r} both starts and ends the journey",
                f"to count a later {event!r} as converted, list it in goals=(...); to restart the wait on a "
                f"newer one, use self.wait(..., restart_on=({event!r},))",
                module,
            )
    for kind, declared in (("timing", spec.timings), ("param", spec.params)):
        for name in declared:
            if name not in registry.settings:
                yield Problem(
                    "error",
                    spec.name,
                    None,
                    f"{kind} {name!r} has no value in the registry",
                    "build the registry with load_registry(settings), which resolves every declared setting",
                    module,
                )


def _check_channels(spec: JourneySpec, step: Step) -> Iterator[Problem]:
    module = _module_file(spec)
    if not step.via:
        yield Problem(
            "error",
            spec.name,
            step.name,
            "the step has no channels (via is empty), so it can never be sent",
            'list the channels to try, in order: Step(via=("email",), ...)',
            module,
        )
    known = ", ".join(sorted(CHANNELS))
    for name in step.via:
        if name in CHANNELS:
            continue
        close = difflib.get_close_matches(name, CHANNELS, n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        yield Problem(
            "error",
            spec.name,
            step.name,
            f"unknown channel {name!r}{guess}; channels: {known}",
            f"write {close[0]!r} in the step's via" if close else f"use one of {known} in the step's via",
            module,
        )


# -- templates ----------------------------------------------------------------------------------------------


class _Unknown(ChainableUndefined):
    """A value the sample context lacks (an event property, a data field): it renders empty, and whatever a
    template does with it gives another, so a template is judged on its own mistakes, not on the sample's."""

    __slots__ = ()

    def _same(self, *args: Any, **kwargs: Any) -> _Unknown:
        return self

    def _no(self, other: Any) -> bool:
        return False

    # Undefined's operators raise (typed NoReturn); these answer instead, hence the ignores.
    __call__ = _same  # type: ignore[assignment]
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same  # type: ignore[assignment]
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _same  # type: ignore[assignment]
    __mod__ = __rmod__ = _same  # type: ignore[assignment]
    __pow__ = __rpow__ = __pos__ = __neg__ = _same  # type: ignore[assignment]
    __lt__ = __le__ = __gt__ = __ge__ = _no  # type: ignore[assignment]

    def __int__(self) -> int:  # type: ignore[override]
        return 0

    def __float__(self) -> float:  # type: ignore[override]
        return 0.0


class _Sample(dict[str, Any]):
    """A mapping in which every key is there: the event's properties as far as the check can know them."""

    def __missing__(self, key: str) -> Any:
        return _Unknown(name=key)


def sample_context(settings: Settings, journey: str, step: str, variant: str | None) -> dict[str, Any]:
    """What a template sees at delivery (`JourneyActivities._context`), with made-up values of its shape."""
    public_url = settings.public_url.rstrip("/")
    return {
        "brand": settings.brand_name,
        "customer": {
            "id": "c-sample",
            "first_name": "Lan",
            "attributes": _Sample(first_name="Lan"),
            "timezone": "Asia/Ho_Chi_Minh",
        },
        "event": _Sample(),
        "data": _Sample(),
        "variant": variant,
        "coupon": {
            "code": "SAMPLE-7K2Q",
            "value": 10.0,
            "unit": "percent",
            "expires_at": datetime.now(UTC) + timedelta(days=14),
            "redeemed": False,
        },
        "public_url": settings.public_url,
        "unsubscribe_url": f"{public_url}/unsubscribe/sample",
        "track": str,
        "open_pixel_url": f"{public_url}/t/o/sample.gif",
        "zalo_template_id": template_id_for(settings.zalo_template_ids, journey, step),
    }


class _Templates:
    """The template files as the renderer finds them (same folders, same order), and the checks on them."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.default = settings.default_locale
        self.folders = [*template_dirs(settings, registry), Path(builtin_templates.__file__).parent]
        self.renderer = Renderer(self.folders[:-1], settings.default_locale)
        self.zalo_configured = ZaloZns.configured(settings)

    def check(self, spec: JourneySpec) -> list[Problem]:
        files = self._files(spec.name)  # (step, channel, locale) -> {ext: path}
        locales = sorted({locale for (_, _, locale) in files} | {self.default})
        home = self._folder(spec, files)
        problems: list[Problem] = []
        for step in spec.steps:
            for channel in dict.fromkeys(name for name in step.via if name in CHANNELS):
                cls = CHANNELS[channel]
                for locale in locales:
                    found = files.get((step.name, channel, locale))
                    if found:
                        problems += self._check_files(spec, step, cls, locale, found)
                    else:
                        problems += self._missing(spec, step, cls, locale, files, home)
        return _once(problems)

    def _files(self, journey: str) -> dict[tuple[str, str, str], dict[str, Path]]:
        """`<journey>/<step>.<channel>.<locale>.<ext>` in every folder; the first folder's file wins, as in
        the renderer."""
        files: dict[tuple[str, str, str], dict[str, Path]] = {}
        for folder in self.folders:
            for path in sorted((folder / journey).glob("*.*.*.*")):
                step, channel, locale, ext = [*path.name.split(".", 3), ""][:4]
                if ext in _EXTENSION_PART and path.is_file():
                    files.setdefault((step, channel, locale), {}).setdefault(ext, path)
        return files

    def _folder(self, spec: JourneySpec, files: Mapping[Any, Mapping[str, Path]]) -> Path:
        """Where this journey's missing templates should go: beside its others, else beside its module."""
        found = next(iter(files.values()), None)
        if found:
            return next(iter(found.values())).parent
        module = sys.modules.get(spec.workflow.__module__)
        if spec.workflow not in BUILTIN_JOURNEYS.values() and getattr(module, "__file__", None):
            return Path(str(getattr(module, "__file__", ""))).parent / "templates" / spec.name
        return self.folders[-1] / spec.name

    def _check_files(
        self, spec: JourneySpec, step: Step, cls: type[Channel], locale: str, found: Mapping[str, Path]
    ) -> list[Problem]:
        """A step's files for one channel and language: they compile, render and give the parts needed."""
        first = _shown(next(iter(found.values())))
        wanted = language_chain(locale, self.default)[0]
        if wanted != locale:
            message = f"language {locale!r} is looked up as {wanted!r}, so this template is never used"
            fix = f"rename it to {step.name}.{cls.name}.{wanted}.<ext>"
            return [Problem("warning", spec.name, step.name, message, fix, first)]
        for path in found.values():
            try:
                self.renderer.env.get_template(f"{spec.name}/{path.name}")
            except TemplateSyntaxError as exc:
                return [_syntax_error(spec, step, exc, _shown(path))]
        parts: dict[str, str] = {}
        for variant in step.variants if step.experiment else (None,):
            context = sample_context(self.settings, spec.name, step.name, variant)
            try:
                parts = self.renderer.render(spec.name, step.name, cls.name, locale, context).parts
            except TemplateBroken as broken:
                error = broken.error
                if isinstance(error, TemplateSyntaxError):  # in a layout or macro file it extends or imports
                    return [_syntax_error(spec, step, error, first)]
                file, line = _template_frame(error, first)
                of = f" (variant {variant!r})" if variant is not None else ""
                message = f"template fails to render{of}: {type(error).__name__}: {error}"
                fix = _FIX_RENDER
                if "builtin_function_or_method" in str(error):
                    fix = _FIX_DICT_METHOD + fix
                return [Problem("error", spec.name, step.name, message, fix, file, line)]
        return list(self._missing_parts(spec, step, cls, locale, found, parts))

    def _missing_parts(
        self,
        spec: JourneySpec,
        step: Step,
        cls: type[Channel],
        locale: str,
        found: Mapping[str, Path],
        parts: Mapping[str, str],
    ) -> Iterator[Problem]:
        folder = next(iter(found.values())).parent
        for part in cls.required_parts:
            if parts.get(part, "").strip() or (cls is ZaloZns and part in parts):
                continue  # an empty ZNS template id is a setting, not a template mistake (warned below)
            ext = next((ext for ext, made in _EXTENSION_PART.items() if made == part), None)
            if ext is not None:  # the part is a whole file: the .html or the .txt
                path = _shown(folder / f"{step.name}.{cls.name}.{locale}.{ext}")
                kind = "an HTML" if part == "html" else "a plain-text"
                message = f"{cls.name} needs {kind} part: there is no {path}"
                yield Problem("error", spec.name, step.name, message, f"add {path}", path)
            else:
                files = [_shown(path) for path in found.values()]
                block = f"{{% block {part} %}}"
                message = f"{cls.name} needs a {part!r} part: {' or '.join(files)} defines no {block}"
                fix = f"add {block}...{{% endblock %}} to {files[0]}"
                yield Problem("error", spec.name, step.name, message, fix, files[0])
        if cls is ZaloZns and parts.get("template_id") == "" and self.zalo_configured:
            # Said once per step (not per file): the id is a setting of the step, whatever the language.
            message = f"zalo_zns step {step.name} has no template id"
            fix = f"set TOUCHFLOW_ZALO_TEMPLATE_IDS={spec.name}.{step.name}=<id> (the id Zalo approved)"
            yield Problem("warning", spec.name, step.name, message, fix)

    def _missing(
        self,
        spec: JourneySpec,
        step: Step,
        cls: type[Channel],
        locale: str,
        files: Mapping[tuple[str, str, str], Mapping[str, Path]],
        home: Path,
    ) -> Iterator[Problem]:
        exts = [ext for ext, part in _EXTENSION_PART.items() if part in cls.parts] or ["txt"]
        paths = [_shown(home / f"{step.name}.{cls.name}.{locale}.{ext}") for ext in exts]
        add = f"add {' and '.join(paths)}"
        if locale == self.default:
            yield Problem(
                "error",
                spec.name,
                step.name,
                f"no {locale!r} template for {cls.name}, and {locale} (TOUCHFLOW_DEFAULT_LOCALE) is what "
                "every other language falls back to",
                add,
                paths[0],
            )
            return
        chain = language_chain(locale, self.default)[1:]
        fallback = next((lang for lang in chain if (step.name, cls.name, lang) in files), None)
        if fallback is None:
            return  # the default is missing too: that error says it
        yield Problem(
            "warning",
            spec.name,
            step.name,
            f"no {locale!r} template for {cls.name}; customers with locale {locale} get the {fallback} one",
            f"{add}, if they should read it in {locale}",
            paths[0],
        )


_FIX_SYNTAX = (
    "correct the Jinja2 syntax on that line (each {% block %}, {% if %}, {% for %} needs its {% end... %})"
)
_FIX_DICT_METHOD = (
    'event.items, .keys, .values and .get are the mapping\'s methods: write event.get("items", []); '
)
_FIX_RENDER = (
    "correct the expression on that line; a template sees brand, customer (id, first_name, attributes, "
    "timezone), event, data, variant, coupon, public_url, unsubscribe_url, track(url), open_pixel_url, "
    "zalo_template_id and locale"
)


def _syntax_error(spec: JourneySpec, step: Step, exc: TemplateSyntaxError, file: str) -> Problem:
    where = _shown(Path(exc.filename)) if exc.filename else file
    message = f"template does not compile: {exc.message}"
    return Problem("error", spec.name, step.name, message, _FIX_SYNTAX, where, exc.lineno)


def _template_frame(exc: BaseException, default: str) -> tuple[str, int | None]:
    """The template file and line an error was raised from: Jinja2 rewrites its frames to point at them."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(tuple(f".{ext}" for ext in _EXTENSION_PART)):
            return _shown(Path(frame.filename)), frame.lineno
    return default, None


def _module_file(spec: JourneySpec) -> str | None:
    try:
        source = inspect.getsourcefile(spec.workflow)
    except TypeError:
        return None
    return _shown(Path(source)) if source else None


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _once(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


__all__ = ["CheckFailed", "Problem", "check", "has_errors", "load_and_check", "sample_context", "summary"]

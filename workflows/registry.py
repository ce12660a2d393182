"""The journey registry: the built-in journeys plus those of the user's own modules, built once at start.

    registry = load_registry(settings)      # TOUCHFLOW_BUILTIN_JOURNEYS + TOUCHFLOW_JOURNEYS

The composition roots (CLI, worker, API, dev stack) build it and hand it down: the router, relay, worker and
funnels all see the same one. Each journey declares its timings and parameters with defaults
(`@journey(timings={"win_back_delay": "30d"})`); the registry resolves each from `TOUCHFLOW_<NAME>`, and a run
reads the values in force when it enters.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import TypeAdapter, ValidationError

from touchflow.errors import ConfigurationError
from touchflow.segments import SegmentDefinition
from touchflow.settings import Duration, Settings
from touchflow.workflows.abandoned_cart import AbandonedCart
from touchflow.workflows.base import Journey, JourneySpec, Param
from touchflow.workflows.loyalty import Loyalty
from touchflow.workflows.post_purchase import PostPurchase
from touchflow.workflows.welcome import Welcome

BUILTIN_JOURNEYS: dict[str, type[Journey]] = {
    journey.spec.name: journey for journey in (Welcome, AbandonedCart, PostPurchase, Loyalty)
}

_DURATION: TypeAdapter[timedelta] = TypeAdapter(Duration)


class RegistryError(ConfigurationError):
    """The journeys cannot be loaded as configured: a module, a name or a setting is wrong."""


@dataclass(frozen=True)
class ResolvedSetting:
    """A journey timing or parameter with the value in force and where that value came from."""

    name: str
    kind: str  # "timing" | "param"
    value: Any  # timedelta for timings
    default: Any
    source: str  # "default" or the environment variable that set it
    journeys: tuple[str, ...]
    help: str = ""

    @property
    def variable(self) -> str:
        return f"TOUCHFLOW_{self.name.upper()}"

    def as_text(self, value: Any = None) -> str:
        return format_value(self.value if value is None else value)


@dataclass(frozen=True)
class Registry(Mapping[str, JourneySpec]):
    """Every journey the engine runs, by name, with the user's activities and resolved settings."""

    journeys: dict[str, JourneySpec]
    settings: dict[str, ResolvedSetting] = field(default_factory=dict)
    # Activities defined in the user's journey modules (`@activity.defn` functions), for the worker.
    activities: tuple[Callable[..., Any], ...] = ()
    # Template folders of the user's modules (`<module folder>/templates`), searched before the built-ins.
    template_dirs: tuple[Path, ...] = ()
    modules: tuple[str, ...] = ()
    # Segments declared in the user's journey modules (`segment(...)`), by name.
    segments: dict[str, SegmentDefinition] = field(default_factory=dict)

    def __getitem__(self, name: str) -> JourneySpec:
        return self.journeys[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.journeys)

    def __len__(self) -> int:
        return len(self.journeys)

    @cached_property
    def routed(self) -> frozenset[str]:
        """The event names some journey starts on, ends on or listens to; only these go to Temporal."""
        return frozenset(name for spec in self.journeys.values() for name in spec.events())

    def timings_for(self, journey: str) -> dict[str, float]:
        """The journey's timings in seconds, as a run reads them when it enters."""
        return {
            name: setting.value.total_seconds()
            for name, setting in self.settings.items()
            if setting.kind == "timing" and journey in setting.journeys
        }

    def params_for(self, journey: str) -> dict[str, Any]:
        return {
            name: setting.value
            for name, setting in self.settings.items()
            if setting.kind == "param" and journey in setting.journeys
        }


def format_value(value: Any) -> str:
    """A setting's value the way a user writes it in the environment (`1h`, `silver:1000,gold:5000`)."""
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ",".join(f"{key}:{format_value(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ",".join(format_value(item) for item in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def load_registry(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    *,
    extra: Sequence[type[Journey]] = (),
) -> Registry:
    """Built-ins (`TOUCHFLOW_BUILTIN_JOURNEYS`) plus every `@journey` of the `TOUCHFLOW_JOURNEYS` modules.

    `extra` adds journey classes directly (tests, `touchflow.testing`). Raises RegistryError naming the
    module, journey or variable, and the reason, so a process refuses to start on a mistake.
    """
    journeys: list[type[Journey]] = [*_builtins(settings.builtin_journeys)]
    activities: list[Callable[..., Any]] = []
    segments: dict[str, SegmentDefinition] = {}
    for module_name in settings.journeys:
        module = import_journey_module(module_name)
        found = [obj for obj in vars(module).values() if _is_journey(obj)]
        defined_here = [cls for cls in found if cls.__module__ == module.__name__]
        declared = [obj for obj in vars(module).values() if isinstance(obj, SegmentDefinition)]
        if not defined_here and not declared:
            raise RegistryError(
                f"TOUCHFLOW_JOURNEYS: module {module_name!r} ({module.__file__}) defines no @journey class "
                "and no segment"
            )
        for definition in declared:
            if segments.setdefault(definition.name, definition) is not definition:
                raise RegistryError(
                    f"TOUCHFLOW_JOURNEYS: two segments are named {definition.name!r} "
                    f"(one in {module_name!r}); give one of them another name"
                )
        journeys += found
        activities += [
            obj
            for obj in vars(module).values()
            if callable(obj) and hasattr(obj, "__temporal_activity_definition") and obj not in activities
        ]
    journeys += extra
    return build_registry(
        journeys,
        environ if environ is not None else os.environ,
        activities=activities,
        modules=tuple(settings.journeys),
        segments=segments.values(),
    )


def build_registry(
    classes: Sequence[type[Journey]],
    environ: Mapping[str, str],
    *,
    activities: Sequence[Callable[..., Any]] = (),
    modules: Sequence[str] = (),
    segments: Iterable[SegmentDefinition] = (),
) -> Registry:
    """A registry of these classes, their settings resolved from `environ` (`TOUCHFLOW_<NAME>`).

    A journey's templates are looked up in the `templates/` folder beside its module, before the built-in
    ones: `shop/journeys.py` → `shop/templates/<journey>/<step>.<channel>.<locale>.<ext>`.
    """
    specs: dict[str, JourneySpec] = {}
    for cls in dict.fromkeys(classes):  # one class imported by two modules is one journey
        spec = cls.spec
        if spec.name in specs and specs[spec.name].workflow is not cls:
            first = specs[spec.name].workflow
            raise RegistryError(
                f"two journeys are named {spec.name!r}: {_where(first)} and {_where(cls)}; "
                "give one of them another name (@journey(name=...))"
            )
        specs[spec.name] = spec
    return Registry(
        journeys=specs,
        settings=_resolve_settings(specs, environ),
        activities=tuple(activities),
        template_dirs=tuple(_template_dirs(specs.values())),
        modules=tuple(modules),
        segments={definition.name: definition for definition in segments},
    )


def _template_dirs(specs: Iterable[JourneySpec]) -> list[Path]:
    folders: list[Path] = []
    for spec in specs:
        if spec.workflow in BUILTIN_JOURNEYS.values():
            continue  # the built-in templates are the renderer's own
        module_file = getattr(sys.modules.get(spec.workflow.__module__), "__file__", None)
        folder = Path(module_file).parent / "templates" if module_file else None
        if folder is not None and folder.is_dir() and folder not in folders:
            folders.append(folder)
    return folders


def import_journey_module(name: str) -> ModuleType:
    """Import a user's module with the working directory on the import path, as uvicorn does."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise RegistryError(
                f"TOUCHFLOW_JOURNEYS: no module named {name!r} (looked in {cwd} and the installed packages; "
                "run touchflow from your project's folder, or install it)"
            ) from None
        raise RegistryError(
            f"TOUCHFLOW_JOURNEYS: module {name!r} failed to import: {_last_frame(exc)}"
        ) from None
    except Exception as exc:
        raise RegistryError(
            f"TOUCHFLOW_JOURNEYS: module {name!r} failed to import: {_last_frame(exc)}"
        ) from None


def _last_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _builtins(selection: Sequence[str]) -> list[type[Journey]]:
    names = [name.strip().lower() for name in selection if name.strip()]
    if names in (["all"], []):
        return list(BUILTIN_JOURNEYS.values())
    if names == ["none"]:
        return []
    unknown = [name for name in names if name not in BUILTIN_JOURNEYS]
    if unknown:
        raise RegistryError(
            f"TOUCHFLOW_BUILTIN_JOURNEYS: no built-in journey {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(BUILTIN_JOURNEYS)}, or 'all' or 'none'"
        )
    return [BUILTIN_JOURNEYS[name] for name in names]


def _is_journey(obj: object) -> bool:
    return (
        inspect.isclass(obj)
        and issubclass(obj, Journey)
        and getattr(obj, "spec", None) is not None
        and (obj.spec.workflow is obj)
    )


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _resolve_settings(
    specs: Mapping[str, JourneySpec], environ: Mapping[str, str]
) -> dict[str, ResolvedSetting]:
    """Each declared timing and parameter with its value in force; one name means one setting everywhere."""
    declared: dict[str, tuple[str, Any, str, list[str]]] = {}  # name -> (kind, default, help, journeys)
    for spec in specs.values():
        for kind, table in (("timing", spec.timings), ("param", spec.params)):
            for name, param in table.items():
                if name in Settings.model_fields:
                    raise RegistryError(
                        f"journey {spec.name}: {kind} {name!r} is already an engine setting "
                        f"(TOUCHFLOW_{name.upper()}); give it a name of the journey's own"
                    )
                if name in declared:
                    other_kind, other_default, _, owners = declared[name]
                    if other_kind != kind or other_default != param.default:
                        raise RegistryError(
                            f"journeys {owners[0]} and {spec.name} both declare {name!r} with different "
                            f"defaults ({format_value(other_default)} and {format_value(param.default)}): "
                            "use one default, or give one of them another name"
                        )
                    owners.append(spec.name)
                else:
                    declared[name] = (kind, param.default, param.help, [spec.name])
    resolved: dict[str, ResolvedSetting] = {}
    params = {name: param for spec in specs.values() for name, param in spec.params.items()}
    for name, (kind, default, help_, owners) in sorted(declared.items()):
        variable = f"TOUCHFLOW_{name.upper()}"
        raw = environ.get(variable)
        value, source = default, "default"
        if raw is not None and raw.strip():
            try:
                value = _DURATION.validate_python(raw) if kind == "timing" else params[name].parse(raw)
            except (ValidationError, ValueError, TypeError) as exc:
                reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
                expected = "a duration such as 30s, 15m, 1h, 2d" if kind == "timing" else "a valid value"
                raise RegistryError(f"{variable}={raw!r}: {reason} (expected {expected})") from None
            source = variable
        resolved[name] = ResolvedSetting(
            name=name,
            kind=kind,
            value=value,
            default=default,
            source=source,
            journeys=tuple(owners),
            help=help_,
        )
    return resolved


__all__ = [
    "BUILTIN_JOURNEYS",
    "Param",
    "Registry",
    "RegistryError",
    "ResolvedSetting",
    "build_registry",
    "load_registry",
]

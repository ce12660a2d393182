"""touchflow's one error root. Everything touchflow raises on purpose is a `TouchflowError`:

    TouchflowError
    ├── ConfigurationError   settings, journeys or templates are wrong: the process refuses to start
    │   └── RegistryError    (touchflow.workflows.registry) a journey module, name or setting
    └── TemplateUnusable     (touchflow.rendering) a step's template cannot give this channel a message:
        ├── TemplateMissing  no file in any language tried
        └── TemplateBroken   a file raised while loading or rendering; the delivery tries the next channel

A `ConfigurationError` is also a `ValueError`, so the CLI prints its message and exits non-zero.
"""

from __future__ import annotations


class TouchflowError(Exception):
    """Base of every error touchflow raises on purpose."""


class ConfigurationError(TouchflowError, ValueError):
    """Something a person configured is wrong; the message names it and says what to do."""

"""touchflow's one error root. Everything touchflow raises on purpose is a `TouchflowError`:

    TouchflowError                 `http_status`: what the API answers when one reaches it (one handler)
    ├── InvalidInput         422: a request's value the store or a signer cannot take; names the field
    ├── NotFound             404: what a request names does not exist
    ├── ConfigurationError   settings, journeys or templates are wrong: the process refuses to start
    │   └── RegistryError    (touchflow.workflows.registry) a journey module, name or setting
    └── TemplateUnusable     (touchflow.rendering) a step's template cannot give this channel a message:
        ├── TemplateMissing  no file in any language tried
        └── TemplateBroken   a file raised while loading or rendering; the delivery tries the next channel

A `ConfigurationError` is also a `ValueError`, so the CLI prints its message and exits non-zero. The API maps
every `TouchflowError` that reaches it to `http_status` with its message (`touchflow.api.errors`); what is not
a `TouchflowError` is a bug, and a 500.
"""

from __future__ import annotations


class TouchflowError(Exception):
    """Base of every error touchflow raises on purpose."""

    http_status = 500


class InvalidInput(TouchflowError, ValueError):
    """A value in a request cannot be used; the message names it (`cursor: ...`) and says what would do."""

    http_status = 422


class NotFound(TouchflowError, LookupError):
    """What a request names does not exist."""

    http_status = 404


class ConfigurationError(TouchflowError, ValueError):
    """Something a person configured is wrong; the message names it and says what to do."""

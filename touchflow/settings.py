"""touchflow's one settings object, read from `TOUCHFLOW_*` environment variables.

Every field here is listed in the README; durations accept `30s`, `15m`, `1h`, `2d` or ISO 8601 (`PT1H`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, TypeAdapter, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from touchflow.apikeys import digest, split_entry
from touchflow.errors import ConfigurationError
from touchflow.urls import HostPatterns

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> Any:
    """Accept `30s`/`15m`/`1h`/`2d`/`1w` (and compounds like `1h30m`) besides what pydantic takes."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", text, re.IGNORECASE)
    if parts and re.fullmatch(r"(?:\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*)+", text, re.IGNORECASE):
        seconds = sum(float(n) * _UNIT_SECONDS[unit.lower()] for n, unit in parts)
        return timedelta(seconds=seconds)
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return timedelta(seconds=float(text))  # plain seconds (pydantic reads "90" as a malformed ISO form)
    return text  # ISO 8601 (`PT1H`, `P2D`): pydantic parses those


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
_DURATION: TypeAdapter[timedelta] = TypeAdapter(Duration)


def to_timedelta(value: timedelta | str | float) -> timedelta:
    """`"30s"`, `"1h30m"`, `"PT1H"`, seconds or a timedelta → timedelta; ValueError names what is wrong."""
    try:
        return _DURATION.validate_python(value)
    except ValidationError:
        raise ValueError(
            f"{value!r} is not a duration (use 30s, 15m, 1h, 2d or ISO 8601 such as PT1H)"
        ) from None


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]
# `a.example, *.b.example, http://c.example`: parsed into patterns at load (touchflow.urls).
HostList = Annotated[HostPatterns, NoDecode]

# The push services of the browsers that implement Web Push, as their subscriptions name them:
# Chrome (and Edge on Android, Opera, Samsung Internet, Brave) FCM, Chromium builds without Google's keys,
# Firefox (Mozilla autopush), Safari on macOS and iOS (Apple), Edge on Windows (WNS). Not `*.googleapis.com`:
# that covers Cloud Storage buckets (`<bucket>.storage.googleapis.com`), which anyone can own.
DEFAULT_PUSH_SERVICE_HOSTS = HostPatterns.parse(
    "fcm.googleapis.com, jmt17.google.com, updates.push.services.mozilla.com, *.push.services.mozilla.com, "
    "*.push.apple.com, *.notify.windows.com"
)


def _split_pairs(value: Any) -> Any:
    """`a=1, b=2` → {"a": "1", "b": "2"}."""
    if not isinstance(value, str):
        return value
    pairs = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise ValueError(f"{item!r} is not name=value")
        pairs[key.strip()] = val.strip()
    return pairs


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOUCHFLOW_", extra="ignore")

    # Where state lives
    home: Path = Field(Path(".touchflow"), description="Folder for local state (SQLite, dev mail).")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite under `home`.")

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "touchflow"
    # A Temporal cluster over TLS, or Temporal Cloud (docs/operations.md). Each PEM setting takes a file's
    # path or the PEM text itself (a container's secret in the environment).
    temporal_tls_cert: str = Field("", description="Client certificate (mTLS): a PEM file or PEM text.")
    temporal_tls_key: SecretStr = Field(
        SecretStr(""), description="The client certificate's private key: a PEM file or PEM text."
    )
    temporal_tls_ca: str = Field(
        "", description="CA that signed the server's certificate, when not a public one: PEM file or text."
    )
    temporal_api_key: SecretStr = Field(
        SecretStr(""), description="Temporal Cloud API key (sent as a bearer token, over TLS)."
    )

    # Observability (docs/operations.md)
    log_format: Literal["text", "json"] = Field(
        "text", description="`json`: one JSON object a line, with workflow and event ids where known."
    )
    otel_endpoint: str = Field(
        "",
        description="OTLP/HTTP collector (`http://collector:4318`): traces from the API through Temporal to "
        "the provider call; empty: tracing off. Needs `pip install 'touchflow[otel]'`.",
    )

    # Worker (docs/operations.md: what each trades)
    worker_metrics_host: str = Field(
        "127.0.0.1", description="Where a worker's probe port listens (`0.0.0.0` in a container)."
    )
    worker_metrics_port: int = Field(
        8001,
        ge=0,
        le=65535,
        description="A worker's /metrics (its own and the Temporal SDK's), /healthz and /readyz; 0: off.",
    )
    worker_max_concurrent_activities: int = Field(
        100, ge=1, description="Activities (deliveries) one worker runs at once."
    )
    worker_max_concurrent_workflow_tasks: int = Field(
        100, ge=1, description="Workflow tasks (journey steps being decided) one worker runs at once."
    )
    worker_max_cached_workflows: int = Field(
        1000,
        ge=0,
        description="Journeys a worker keeps in memory between steps (sticky cache); 0: replay each step.",
    )

    # API
    api_keys: CsvList = Field(default_factory=list)
    secret_key: SecretStr = SecretStr("")
    previous_secret_keys: Annotated[list[SecretStr], NoDecode, BeforeValidator(_split_csv)] = Field(
        default_factory=list,
        description="Earlier secret keys, comma-separated: tokens they signed still verify; nothing new is "
        "signed with them. Drop one once its links may go unanswered.",
    )
    public_url: str = "http://localhost:8000"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_batch_size: int = Field(1000, ge=1, le=10_000)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    rate_limit_per_minute: int = Field(
        60_000,
        ge=0,
        description="Per API key a minute: a batch counts each of its events, other requests one; 0: off.",
    )
    auth_failures_per_minute: int = Field(
        20, ge=0, description="Failed API key checks a client address may make a minute, then 429; 0: off."
    )
    auto_migrate: bool = True

    # Segment-compatible ingestion (/v1/batch, /v1/track, ...; README "Send events from Segment-compatible
    # libraries")
    track_max_message_bytes: int = Field(
        32 * 1024, ge=1024, description="Largest Segment message (identify, track, ...): over it, 400."
    )
    track_max_batch_bytes: int = Field(
        500 * 1024,
        ge=1024,
        description="Largest Segment batch (/v1/batch, /v1/import), unzipped: over it, 400.",
    )
    track_allowed_origins: CsvList = Field(
        default_factory=list,
        description="Origins (`https://shop.example`) whose pages may send with analytics.js; `*` for any.",
    )
    anonymous_ttl: Duration = Field(
        timedelta(days=30),
        description="An anonymous visitor's profile that never identifies is removed this long after its "
        "last event.",
    )
    lifecycle_order_event: str = Field(
        "order_placed", description="The event that makes a profile a customer (lifecycle stages)."
    )
    lifecycle_engaged_within: Duration = Field(
        timedelta(days=30), description="A profile with no order is engaged if it did anything this recently."
    )
    lifecycle_lapsed_after: Duration = Field(
        timedelta(days=90), description="A customer whose last order is older than this is lapsed."
    )
    segment_refresh_interval: Duration = Field(
        timedelta(hours=1),
        description="How often the worker's schedule re-evaluates every segment over all profiles "
        "(conditions that change with time alone).",
    )
    dev_mail_dir: Path | None = None

    # Insight (README "See how your journeys perform", docs/insight.md)
    attribution_window: Duration = Field(
        timedelta(days=3),
        description="A conversion this soon after a touchpoint is attributed to it (last touch).",
    )
    insight_refresh_interval: Duration = Field(
        timedelta(minutes=5),
        description="How often the worker's schedule brings the journey map's per-hour rollups and the kept "
        "attributions up to date (so the first view after an import does not count everything).",
    )
    temporal_ui_url: str = Field(
        "http://localhost:8233", description="The Temporal UI the dashboard links journey runs to."
    )

    # Relay (store-then-relay outbox)
    relay_interval: Duration = timedelta(milliseconds=500)
    relay_batch_size: int = Field(200, ge=1)

    # Email (SMTP)
    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False
    smtp_timeout: Duration = timedelta(seconds=10)
    smtp_connections: int = Field(
        20,
        ge=1,
        description="SMTP sessions a worker keeps open at most, each reused message after message (closed "
        "after 30 s idle or 100 messages); a send waits for a free one.",
    )
    email_from: str = "touchflow <hello@touchflow.local>"

    # Zalo ZNS (Zalo OA OpenAPI; see docs/channels/zalo-zns.md)
    zalo_app_id: str = Field("", description="Zalo app id; empty leaves the zalo_zns channel off.")
    zalo_secret_key: SecretStr = Field(SecretStr(""), description="The app's secret key (OAuth v4).")
    zalo_refresh_token: SecretStr = Field(
        SecretStr(""), description="Seed OA refresh token; used once, then rotated in the database."
    )
    zalo_oa_secret_key: SecretStr = Field(
        SecretStr(""), description="OA Secret Key that signs webhooks (X-ZEvent-Signature)."
    )
    zalo_api_base: str = "https://business.openapi.zalo.me"
    zalo_oauth_base: str = "https://oauth.zaloapp.com"
    zalo_timeout: Duration = timedelta(seconds=10)
    zalo_webhook_max_age: Duration = Field(
        timedelta(minutes=15),
        description="How far a signed Zalo webhook event's `timestamp` may be from now (either way): "
        "outside it the event is refused (401), so a captured event cannot be replayed later.",
    )
    zalo_template_ids: Annotated[dict[str, str], NoDecode, BeforeValidator(_split_pairs)] = Field(
        default_factory=dict,
        description="ZNS template ids of built-in steps: `post_purchase.order_confirmation_zns=231245,…`; "
        "`journey.step.locale=id` (`post_purchase.coupon.en=231246`) for a language Zalo approved apart.",
    )
    # Onsite inbox (browser API, inbox.js)
    inbox_allowed_origins: CsvList = Field(
        default_factory=list,
        description="Origins (`https://shop.example`) whose pages may call the inbox API; `*` for any.",
    )
    inbox_poll_interval: Duration = Field(
        timedelta(seconds=1), description="How often a live stream asks the database for new messages."
    )
    inbox_heartbeat: Duration = Field(
        timedelta(seconds=15), description="A comment line on an idle stream, so proxies keep it open."
    )
    inbox_stream_max_age: Duration = Field(
        timedelta(minutes=5),
        description="A stream ends after this long; the browser reconnects where it left off.",
    )
    inbox_ticket_ttl: Duration = Field(
        timedelta(seconds=60),
        description="How long a stream ticket (POST /v1/inbox/stream-tickets) may be used to open a stream.",
    )
    inbox_max_streams: int = Field(
        2000, ge=1, description="Live inbox streams one API process holds at most; the next gets 503."
    )
    inbox_db_threads: int = Field(
        4, ge=1, le=64, description="Threads (and so database connections) for the inbox API's queries."
    )

    # Customer protection (see docs/guarantees.md)
    marketing_consent_default: bool = Field(
        True, description="Marketing is allowed unless the profile says no; false requires an explicit yes."
    )
    quiet_hours: str = Field("21:00-08:00", description="No marketing then, in the customer's time zone.")
    default_timezone: str = "Asia/Ho_Chi_Minh"
    frequency_caps: str = Field("3/1d", description="Marketing caps: `3/1d, email=2/1d, web_push=4/12h`.")

    # Web push (RFC 8030 + 8291 + 8292 VAPID); `touchflow vapid-keys` makes the key pair
    vapid_private_key: SecretStr = Field(
        SecretStr(""), description="VAPID private key (base64url); empty leaves web push unconfigured."
    )
    vapid_subject: str = Field(
        "", description="VAPID `sub` claim: a mailto: or https: URL push services reach you at."
    )
    push_ttl: Duration = Field(
        timedelta(days=1), description="How long a push service keeps a message for an offline device."
    )
    push_timeout: Duration = timedelta(seconds=10)
    push_service_hosts: HostList = Field(
        DEFAULT_PUSH_SERVICE_HOSTS,
        description="Hosts push subscription endpoints may be on (names, addresses, `*.suffix`; "
        "`http://host` allows plain http to it); a host named here is reached even on a private address.",
    )

    # Messages
    brand_name: str = "touchflow"
    link_domains: HostList = Field(
        HostPatterns(),
        description="Where tracked links may point (host names, `*.suffix`); a link elsewhere is left out of "
        "the message. Empty: any http(s) address.",
    )
    default_locale: str = "en"
    templates_dir: Path | None = Field(
        None, description="Extra template folder searched before the built-in templates."
    )

    delivery_attempt_timeout: Duration = Field(
        timedelta(minutes=1),
        description="How long one delivery attempt may take before Temporal retries it (its send lease too).",
    )

    # Broadcasts (docs/broadcasts.md)
    broadcast_batch_size: int = Field(
        200, ge=1, le=5000, description="Recipients one broadcast activity sends to (its heartbeat's unit)."
    )
    broadcast_concurrency: int = Field(
        4, ge=1, le=64, description="Batches of one broadcast in flight at once (without a `rate`)."
    )
    email_rate_limit: float | None = Field(
        None, gt=0, description="Broadcast emails per second across every worker (a rate-limited queue)."
    )
    web_push_rate_limit: float | None = Field(
        None, gt=0, description="Broadcast web pushes per second across every worker."
    )
    zalo_zns_rate_limit: float | None = Field(
        None, gt=0, description="Broadcast Zalo ZNS messages per second across every worker."
    )

    def channel_rate_limit(self, channel: str) -> float | None:
        """Messages/s a channel's provider allows across all workers (`TOUCHFLOW_<CHANNEL>_RATE_LIMIT`)."""
        limit: float | None = getattr(self, f"{channel}_rate_limit", None)
        return limit

    # Journeys: the built-ins, and the user's own modules (each journey declares its own timings and
    # parameters, read from TOUCHFLOW_<NAME> by the registry; see touchflow.workflows.registry)
    journeys: CsvList = Field(
        default_factory=list,
        description="Modules whose @journey classes run beside the built-ins: `shop.journeys,shop.winback`.",
    )
    builtin_journeys: CsvList = Field(
        default_factory=lambda: ["all"],
        description="Built-in journeys to run: `all`, `none`, or names (`welcome,post_purchase`).",
    )

    @field_validator("vapid_subject")
    @classmethod
    def _check_vapid_subject(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("mailto:", "https://")):
            raise ValueError("must be a mailto: or https: URL, e.g. 'mailto:ops@shop.example'")
        return value

    @field_validator("inbox_ticket_ttl")
    @classmethod
    def _check_ticket_ttl(cls, value: timedelta) -> timedelta:
        # Long enough for a slow network between asking and opening; short, as it travels in a URL.
        if not timedelta(seconds=1) <= value <= timedelta(hours=1):
            raise ValueError("must be between 1s and 1h")
        return value

    @field_validator("push_ttl")
    @classmethod
    def _check_push_ttl(cls, value: timedelta) -> timedelta:
        # Push services keep a message at most about four weeks (FCM: 28 days) and clamp longer TTLs.
        if not timedelta(0) <= value <= timedelta(days=28):
            raise ValueError("must be between 0s and 28d")
        return value

    @field_validator("default_locale")
    @classmethod
    def _lower_locale(cls, value: str) -> str:
        return value.lower()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'touchflow.db').as_posix()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()


# -- secrets a production process refuses to start without ------------------------------------------------

MIN_SECRET_LENGTH = 32
_MAKE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
# What people leave in from samples and compose files; compared with letters and digits only, lower case.
_PLACEHOLDER_PREFIXES = (
    "changeme",
    "changethis",
    "replaceme",
    "yoursecret",
    "yourkey",
    "yourapikey",
    "insert",
)
_PLACEHOLDER_PARTS = ("placeholder", "notforproduction", "dontuseinproduction", "donotuse")
_PLACEHOLDER_WORDS = {"secret", "secretkey", "apikey", "password", "changeme", "default", "example", "test"}


def _weakness(value: str) -> str | None:
    """Why `value` is no secret to sign or authenticate with (never quoting it), or None."""
    plain = re.sub(r"[^a-z0-9]", "", value.lower())
    if (
        plain in _PLACEHOLDER_WORDS
        or plain.startswith(_PLACEHOLDER_PREFIXES)
        or any(part in plain for part in _PLACEHOLDER_PARTS)
    ):
        return "is a placeholder (change-me, secret, …), not a secret"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is too short ({len(value)} characters; at least {MIN_SECRET_LENGTH})"
    if len(set(value)) < 8:
        return "repeats a few characters: it is not random"
    return None


def check_production_secrets(settings: Settings, *, api: bool) -> None:
    """Refuse to start `touchflow api` (`api=True`) or `touchflow worker` on a missing, short or placeholder
    TOUCHFLOW_SECRET_KEY, or a short or placeholder key in TOUCHFLOW_API_KEYS (a `sha256=` entry is taken as
    given). `touchflow dev` makes its own secrets and does not call this."""
    problems = []
    secret = settings.secret_key.get_secret_value()
    weakness = "is not set" if not secret else _weakness(secret)
    if weakness:
        problems.append(
            f"TOUCHFLOW_SECRET_KEY {weakness}: it signs unsubscribe and tracking links and inbox tokens; "
            f"make one with: {_MAKE_SECRET}"
        )
    if api and not settings.api_keys:
        problems.append("TOUCHFLOW_API_KEYS is not set: make a key with `touchflow api-key`")
    for number, entry in enumerate(settings.api_keys, 1):
        _, key = split_entry(entry)
        if not key.startswith("sha256=") and (weakness := _weakness(key)):
            problems.append(
                f"TOUCHFLOW_API_KEYS: key {number} (id {digest(key).hex()[:12]}) {weakness}: make one with "
                "`touchflow api-key`, which prints the key and the sha256= entry to configure instead"
            )
    if problems:
        raise ConfigurationError("not starting:\n  " + "\n  ".join(problems))

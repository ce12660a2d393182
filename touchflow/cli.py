"""The `touchflow` command: `dev` (everything on one machine), `api`, `worker`, `journeys`, `check`,
`new journey`, `replay`, `migrate`, `api-key`, `vapid-keys`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from touchflow import tracing
from touchflow.apikeys import Scope, new_key
from touchflow.check import CheckFailed, has_errors, load_and_check, summary
from touchflow.db import make_engine, migrate
from touchflow.logs import configure_logging
from touchflow.settings import Settings, check_production_secrets, get_settings
from touchflow.workflows.registry import Registry, load_registry

if TYPE_CHECKING:
    from temporalio.client import Client
    from temporalio.runtime import Runtime
    from temporalio.worker import Worker

    from touchflow.activities.journey import JourneyActivities

log = logging.getLogger("touchflow")


class _Server(uvicorn.Server):
    """uvicorn inside our own loop: the caller owns the signals and stops it by `should_exit`."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


def _serve(settings: Settings, registry: Registry, host: str, port: int) -> _Server:
    from touchflow.api.main import create_app

    config = uvicorn.Config(
        create_app(settings, registry),
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        log_config=None,  # uvicorn's records go through the process's handler (JSON when asked)
    )
    return _Server(config)


@contextlib.asynccontextmanager
async def _probe_port(
    settings: Settings, activities: JourneyActivities, client: Client, worker: Worker, sdk_metrics: str | None
) -> AsyncIterator[None]:
    """The worker's /metrics, /healthz and /readyz on TOUCHFLOW_WORKER_METRICS_HOST/PORT (0: none)."""
    if not settings.worker_metrics_port:
        yield
        return
    from touchflow.health import Readiness, probe_app

    async def temporal() -> Client:
        return client

    app = probe_app(
        activities.metrics,
        Readiness(activities.store, temporal),
        lambda: worker.is_running,
        sdk_metrics,
    )
    config = uvicorn.Config(
        app,
        host=settings.worker_metrics_host,
        port=settings.worker_metrics_port,
        log_level="warning",
        lifespan="off",
        log_config=None,
    )
    server = _Server(config)
    task = await _started(server)
    try:
        yield
    finally:
        server.should_exit = True
        await task


async def _started(server: _Server) -> asyncio.Task[None]:
    """Serve in a task of its own; return once it listens (or raise why it could not: a port taken)."""
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        task.result()
        raise RuntimeError(f"the server on port {server.config.port} stopped at start")
    return task


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _run_api(settings: Settings) -> None:
    check_production_secrets(settings, api=True)
    tracing.configure(settings, "touchflow-api")
    server = _serve(settings, load_registry(settings), settings.api_host, settings.api_port)
    task = asyncio.create_task(server.serve())
    waiter = asyncio.create_task(_until_signalled())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await task


def _checked_registry(settings: Settings) -> Registry:
    """The registry, checked as `touchflow check` does, before anything starts: warnings are logged and the
    process goes on; an error stops it (CheckFailed lists every one)."""
    registry, problems = load_and_check(settings)
    for problem in problems:
        if problem.level == "warning":
            log.warning("touchflow check: %s", problem.as_line())
    if registry is None or has_errors(problems):
        raise CheckFailed(problems)
    return registry


def _run_check(settings: Settings, as_json: bool) -> int:
    """`touchflow check`: every problem on a line of its own, then a summary; 1 when there is an error."""
    registry, problems = load_and_check(settings)
    errors = sum(problem.level == "error" for problem in problems)
    if as_json:
        report = {
            "ok": not errors,
            "errors": errors,
            "warnings": len(problems) - errors,
            "problems": [problem.as_dict() for problem in problems],
        }
        print(json.dumps(report, indent=2))
    else:
        for problem in problems:
            print(problem.as_line())
        print(summary(registry, problems))
    return 1 if errors else 0


async def _run_worker(settings: Settings, *, check: bool = True) -> None:
    from touchflow.temporal import connect, ensure_search_attributes
    from touchflow.worker import (
        build_activities,
        build_channel_workers,
        build_worker,
        ensure_insight_schedule,
        ensure_segment_schedule,
    )

    if check:
        check_production_secrets(settings, api=False)
        registry = _checked_registry(settings)
    else:
        # `touchflow dev` started this worker: it checked the journeys and made the secrets itself.
        registry = load_registry(settings)
    tracing.configure(settings, "touchflow-worker")
    activities = build_activities(settings, registry)
    runtime, sdk_metrics = _worker_runtime(settings)
    client = await connect(settings, runtime=runtime)
    await ensure_search_attributes(client)
    await ensure_segment_schedule(client, settings)
    await ensure_insight_schedule(client, settings)
    worker = build_worker(client, settings, activities, registry)
    async with contextlib.AsyncExitStack() as running:
        # Last out: the channels' open connections close once every worker has stopped sending.
        running.push_async_callback(activities.aclose)
        await running.enter_async_context(worker)
        for each in build_channel_workers(client, settings, activities):
            await running.enter_async_context(each)
        await running.enter_async_context(_probe_port(settings, activities, client, worker, sdk_metrics))
        log.info("worker polling task queue %s", settings.task_queue)
        await _until_signalled()


def _worker_runtime(settings: Settings) -> tuple[Runtime | None, str | None]:
    """The worker's Temporal runtime: its SDK metrics (task latencies, slots, polls, sticky cache) served on a
    free loopback port, which the probe port appends to its own /metrics; with JSON logs, the SDK core's log
    lines forwarded to Python's logging (so they are JSON too). None: the SDK's defaults."""
    json_logs = settings.log_format == "json"
    if not settings.worker_metrics_port and not json_logs:
        return None, None
    from temporalio.runtime import (
        LogForwardingConfig,
        LoggingConfig,
        PrometheusConfig,
        Runtime,
        TelemetryConfig,
        TelemetryFilter,
    )

    from touchflow.temporal import free_port

    address = f"127.0.0.1:{free_port()}" if settings.worker_metrics_port else None
    logging_config = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")) if json_logs else None,
    )
    telemetry = TelemetryConfig(
        logging=logging_config,
        metrics=PrometheusConfig(bind_address=address, durations_as_seconds=True) if address else None,
    )
    return Runtime(telemetry=telemetry), f"http://{address}/metrics" if address else None


def _dev_secrets(home: Path) -> dict[str, str]:
    """The dev API key, secret and VAPID key, made once and kept under .touchflow/ so restarts keep them."""
    from touchflow.vapid import generate

    path = home / "dev-secrets.json"
    values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing: dict[str, Callable[[], str]] = {
        "api_key": lambda: "dev_" + secrets.token_urlsafe(18),
        "secret_key": lambda: secrets.token_urlsafe(32),
        "vapid_private_key": lambda: generate().private_key,
    }
    if not missing.keys() <= values.keys():
        values = {name: values.get(name) or make() for name, make in missing.items()}
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))
        path.chmod(0o600)
    return values


def _spawn_worker(overrides: dict[str, object]) -> subprocess.Popen[bytes]:
    """The worker in a process of its own, as in production: the API and the worker each get a whole Python
    (one process would share one interpreter lock between the two). It reads the same settings."""
    env = dict(os.environ)
    for name, value in overrides.items():
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        env[f"TOUCHFLOW_{name.upper()}"] = text
    # `dev` has checked the journeys already, with the same settings: the worker need not say it all again.
    return subprocess.Popen([sys.executable, "-m", "touchflow.cli", "worker", "--no-check"], env=env)


async def _run_dev(args: argparse.Namespace) -> None:
    from touchflow.devinbox import start_inbox
    from touchflow.temporal import DevServer, terminate

    base = get_settings()
    registry = _checked_registry(base)  # before anything starts: a journey mistake starts nothing
    home = base.home.resolve()
    secrets_ = _dev_secrets(home)
    overrides: dict[str, object] = {
        "home": home,
        "temporal_address": f"127.0.0.1:{args.temporal_port}",
        "api_port": args.api_port,
        "public_url": base.public_url
        if "TOUCHFLOW_PUBLIC_URL" in os.environ
        else f"http://localhost:{args.api_port}",
        "api_keys": base.api_keys or [secrets_["api_key"]],
        "secret_key": base.secret_key.get_secret_value() or secrets_["secret_key"],
    }
    if "TOUCHFLOW_TEMPORAL_UI_URL" not in os.environ:
        overrides["temporal_ui_url"] = f"http://localhost:{args.ui_port}"  # the dashboard's links to runs
    if not base.vapid_private_key.get_secret_value():
        # Web push works in dev out of the box: a key of its own, kept with the other dev secrets.
        overrides |= {
            "vapid_private_key": secrets_["vapid_private_key"],
            "vapid_subject": base.vapid_subject or "mailto:dev@touchflow.local",
        }
    if "TOUCHFLOW_QUIET_HOURS" not in os.environ:
        # Trying journeys at night should not wait for the morning; production keeps the default.
        overrides["quiet_hours"] = "off"
    own_inbox = "TOUCHFLOW_SMTP_HOST" not in os.environ
    if own_inbox:
        overrides |= {
            "smtp_host": "127.0.0.1",
            "smtp_port": args.smtp_port,
            "dev_mail_dir": home / "mail",
        }
    settings = Settings.model_validate(base.model_dump() | overrides)
    tracing.configure(settings, "touchflow-api")
    await asyncio.to_thread(migrate, make_engine(settings.resolved_database_url))

    temporal = DevServer(home / "temporal.db", port=args.temporal_port, ui_port=args.ui_port)
    inbox = None
    worker = None
    try:
        await temporal.start()
        if own_inbox:
            inbox = start_inbox(home / "mail", "127.0.0.1", args.smtp_port)
        worker = _spawn_worker(overrides)
        server = _serve(settings, registry, "127.0.0.1", args.api_port)
        api = await _started(server)
        await _worker_up(worker, settings)
        _print_banner(settings, args, own_inbox)
        waiter = asyncio.create_task(_until_signalled())
        await asyncio.wait({api, waiter}, return_when=asyncio.FIRST_COMPLETED)
        print("\nstopping touchflow dev ...", flush=True)
        server.should_exit = True
        await api
    finally:
        if worker is not None:
            terminate(worker)
        if inbox is not None:
            inbox.stop()
        temporal.stop()


async def _worker_up(worker: subprocess.Popen[bytes], settings: Settings, timeout: float = 60.0) -> None:
    """Until the worker process answers on its probe port (the banner names it): raise if it exits first
    (its own lines above say why: a journey error, the probe port taken)."""
    import httpx

    url = f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/healthz"
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while settings.worker_metrics_port:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with status {worker.returncode} (see above)")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"the worker did not answer on {url} within {timeout:.0f}s")
            await asyncio.sleep(0.1)


def _print_banner(settings: Settings, args: argparse.Namespace, own_inbox: bool) -> None:
    lines = [
        "",
        "touchflow dev is running",
        f"  API              http://localhost:{args.api_port}   (OpenAPI: /docs)",
        f"  API key          {settings.api_keys[0]}",
        f"  Dashboard        http://localhost:{args.api_port}/dashboard   (sign in with the API key)",
        f"  API metrics      http://localhost:{args.api_port}/metrics   (/healthz, /readyz)",
    ]
    if settings.worker_metrics_port:
        lines.append(
            f"  Worker metrics   http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics"
            "   (/healthz, /readyz; TOUCHFLOW_WORKER_METRICS_PORT)"
        )
    lines += [
        f"  Temporal UI      http://localhost:{args.ui_port}",
        f"  Temporal gRPC    {settings.temporal_address}",
    ]
    if own_inbox:
        lines += [
            f"  SMTP inbox       127.0.0.1:{args.smtp_port}",
            f"  Mail             http://localhost:{args.api_port}/dev/mail   "
            f"(files: {settings.dev_mail_dir})",
        ]
    else:
        lines.append(f"  SMTP             {settings.smtp_host}:{settings.smtp_port}")
    lines += [
        f"  Database         {settings.resolved_database_url}",
        f"  Quiet hours      {settings.quiet_hours}   (TOUCHFLOW_QUIET_HOURS; off in dev unless set)",
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _print_journeys(registry: Registry, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_journey_rows(registry), indent=2))
        return
    for spec in registry.values():
        reentry = spec.reentry.value.replace("_", " ")
        if spec.cooldown:
            reentry += f" ({spec.cooldown})"
        per = f" per {spec.key}" if spec.key else ""
        exits = [name for name in spec.ends_on if name not in spec.goals]
        print(f"{spec.name}: {spec.description}   [{spec.workflow.__module__}]")
        print(f"  triggers   {', '.join(spec.starts_on)}   (re-entry: {reentry}{per})")
        print(f"  goals      {', '.join(spec.goals) or '-'}")
        print(f"  exits      {', '.join(exits) or '-'}")
        if spec.listens_to:
            print(f"  listens to {', '.join(spec.listens_to)}")
        print(f"  {'step':<24} {'stage':<14} channels (in order of fallback)")
        for step in spec.steps:
            notes = ["transactional"] if step.transactional else []
            if step.experiment:
                notes.append(f"A/B {step.experiment}: {'/'.join(step.variants)}")
            extra = f"   [{'; '.join(notes)}]" if notes else ""
            print(f"  {step.name:<24} {step.stage.value:<14} {' → '.join(step.via)}{extra}")
        settings = [registry.settings[name] for name in (*spec.timings, *spec.params)]
        if settings:
            print(f"  {'setting':<36} {'value':<24} from")
            for setting in settings:
                print(f"  {setting.variable:<36} {setting.as_text():<24} {setting.source}")
        print()


def _journey_rows(registry: Registry) -> list[dict[str, object]]:
    return [
        {
            "journey": spec.name,
            "module": spec.workflow.__module__,
            "description": spec.description,
            "starts_on": list(spec.starts_on),
            "exits_on": [name for name in spec.ends_on if name not in spec.goals],
            "goals": list(spec.goals),
            "listens_to": list(spec.listens_to),
            "key": spec.key,
            "reentry": spec.reentry.value,
            "cooldown_seconds": spec.cooldown.total_seconds() if spec.cooldown else None,
            "steps": [
                {
                    "step": step.name,
                    "stage": step.stage.value,
                    "channels": list(step.via),
                    "transactional": step.transactional,
                    "experiment": step.experiment,
                    "variants": list(step.variants) if step.experiment else [],
                }
                for step in spec.steps
            ],
            "settings": [
                {
                    "name": setting.name,
                    "variable": setting.variable,
                    "kind": setting.kind,
                    "value": setting.as_text(),
                    "default": setting.as_text(setting.default),
                    "source": setting.source,
                    "help": setting.help,
                }
                for setting in (registry.settings[name] for name in (*spec.timings, *spec.params))
            ],
        }
        for spec in registry.values()
    ]


def _scaffold(args: argparse.Namespace) -> None:
    from touchflow.scaffold import new_journey

    root = Path.cwd()
    for item in new_journey(root, args.name, args.trigger, args.package):
        print(f"  wrote {item.path.relative_to(root)}   ({item.what})")
    module = f"{args.package}.{args.name}"
    print(
        f"\nNext: TOUCHFLOW_JOURNEYS={module} touchflow check, then pytest tests/test_{args.name}.py, then\n"
        f"TOUCHFLOW_JOURNEYS={module} TOUCHFLOW_{args.name.upper()}_DELAY=30s touchflow dev"
    )


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from touchflow.replay import fetch_histories, load_histories, replay_histories, save_histories
    from touchflow.temporal import connect

    registry = load_registry(settings)
    if args.journey not in registry:
        raise ValueError(f"no journey {args.journey!r}; journeys: {', '.join(registry)}")
    if args.histories is not None:
        histories = load_histories(args.histories)
        where = str(args.histories)
    else:
        histories = await fetch_histories(await connect(settings), args.journey, args.limit)
        where = settings.temporal_address
    if args.save is not None:
        for path in save_histories(histories, args.save):
            print(f"saved {path}")
        return 0
    failures = await replay_histories(registry, histories, args.journey)
    for failure in failures:
        print(f"FAIL {failure.workflow_id}: {failure.error}")
    replayed = sum(1 for h in histories if h.events)
    print(f"{args.journey}: {replayed - len(failures)} of {replayed} run(s) from {where} replay on this code")
    return 1 if failures else 0


def _print_vapid_keys(subject: str) -> None:
    from touchflow.vapid import generate

    if not subject.startswith(("mailto:", "https://")):
        raise ValueError(
            f"--subject must be a mailto: or https: URL, e.g. mailto:ops@shop.example; got {subject!r}"
        )
    keys = generate()
    print("# Web push (VAPID) keys: put these lines in the environment of the worker and the API.")
    print("# Keep the private key secret; changing it invalidates every stored subscription.")
    print(f"TOUCHFLOW_VAPID_PRIVATE_KEY={keys.private_key}")
    print(f"TOUCHFLOW_VAPID_SUBJECT={subject}")
    print("# The public key, for pushManager.subscribe({applicationServerKey}); the API serves it too, at")
    print("# GET /v1/push/vapid-public-key:")
    print(f"# public key: {keys.public_key}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="touchflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser(
        "dev",
        help="run everything locally: Temporal dev server + UI, worker, API, mail",
        description="Everything on one machine: the Temporal dev server and its UI (state in "
        "TOUCHFLOW_HOME/temporal.db), a local SMTP inbox, the worker (a process of its own) and the API. "
        "Runs `touchflow check` first and refuses to start on errors. Your journeys come from "
        "TOUCHFLOW_JOURNEYS, as in production. Ctrl-C stops all of it.",
    )
    dev.add_argument(
        "--temporal-port", type=int, default=7233, help="Temporal gRPC port (default: %(default)s)"
    )
    dev.add_argument("--ui-port", type=int, default=8233, help="Temporal UI port (default: %(default)s)")
    dev.add_argument("--api-port", type=int, default=8000, help="touchflow API port (default: %(default)s)")
    dev.add_argument(
        "--smtp-port",
        type=int,
        default=1025,
        help="local SMTP inbox port; unused when TOUCHFLOW_SMTP_HOST is set (default: %(default)s)",
    )
    sub.add_parser("api", help="run the HTTP API (TOUCHFLOW_API_HOST/PORT)")
    worker = sub.add_parser("worker", help="run a Temporal worker for every journey (after `check`)")
    worker.add_argument("--no-check", action="store_true", help=argparse.SUPPRESS)  # `dev` checked already
    journeys = sub.add_parser("journeys", help="list the journeys: triggers, exits, steps, channels")
    journeys.add_argument("--json", action="store_true")
    check = sub.add_parser(
        "check", help="check journeys and templates: channels, templates per step, channel and language"
    )
    check.add_argument("--json", action="store_true", help="the problems as JSON, for CI")
    sub.add_parser("migrate", help="bring the database schema up to date")
    new = sub.add_parser("new", help="scaffold a journey, its templates and a test in your project")
    new_kind = new.add_subparsers(dest="kind", required=True)
    new_journey = new_kind.add_parser(
        "journey",
        help="a journey module, a template per step, channel and language (vi, en), and a passing test",
    )
    new_journey.add_argument("name", help="the journey's name in lower_snake_case, e.g. win_back")
    new_journey.add_argument("--trigger", required=True, help="the event that starts it, e.g. order_placed")
    new_journey.add_argument(
        "--package", default="journeys", help="the package to write it into (default: %(default)s)"
    )
    replay = sub.add_parser(
        "replay",
        help="replay recent runs of a journey against this code (a deploy gate)",
        description="Fetch the newest runs of one journey from Temporal (TOUCHFLOW_TEMPORAL_ADDRESS) and "
        "replay them against the journey code here: exit 1 when the code cannot continue one of them. "
        "--save keeps them as files, --histories replays saved files without a server.",
    )
    replay.add_argument("--journey", required=True, help="the journey's name")
    replay.add_argument("--limit", type=int, default=100, help="newest runs to fetch (default: %(default)s)")
    replay.add_argument(
        "--save", type=Path, metavar="DIR", help="write the fetched histories here, replay none"
    )
    replay.add_argument("--histories", type=Path, metavar="DIR", help="replay the saved histories in DIR")
    api_key = sub.add_parser("api-key", help="make an API key; prints it and the hashed entry to configure")
    api_key.add_argument(
        "--scope", action="append", choices=[s.value for s in Scope], help="repeatable; default: admin"
    )
    vapid = sub.add_parser("vapid-keys", help="generate a VAPID key pair for web push; prints the env lines")
    vapid.add_argument(
        "--subject",
        default="mailto:ops@example.com",
        help="where push services can reach you: a mailto: or https: URL (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    # Read before the settings (a setting's error is logged in the format asked for).
    log_format = os.environ.get("TOUCHFLOW_LOG_FORMAT", "text").strip().lower()
    configure_logging(os.environ.get("TOUCHFLOW_LOG_LEVEL", "INFO"), log_format)
    try:
        if args.command == "dev":
            asyncio.run(_run_dev(args))
        elif args.command == "api":
            asyncio.run(_run_api(get_settings()))
        elif args.command == "worker":
            asyncio.run(_run_worker(get_settings(), check=not args.no_check))
        elif args.command == "journeys":
            _print_journeys(load_registry(get_settings()), args.json)
        elif args.command == "check":
            code = _run_check(get_settings(), args.json)
            if code:
                sys.exit(code)
        elif args.command == "api-key":
            key, entry = new_key([Scope(s) for s in args.scope or []])
            print(f"key:   {key}\nentry: {entry}   (add to TOUCHFLOW_API_KEYS; the key itself is not stored)")
        elif args.command == "vapid-keys":
            _print_vapid_keys(args.subject)
        elif args.command == "new":
            _scaffold(args)
        elif args.command == "replay":
            code = asyncio.run(_replay(get_settings(), args))
            # The Temporal client's native threads can outlive a short command and abort the interpreter's
            # teardown (temporalio/sdk-python#300, "PyGILState_Release ... finalizing"): its answer is given,
            # so leave without the teardown.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        elif args.command == "migrate":
            migrate(make_engine(get_settings().resolved_database_url))
    except ValueError as exc:
        sys.exit(f"touchflow: {exc}")


if __name__ == "__main__":
    main()

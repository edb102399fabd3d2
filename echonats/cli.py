"""The ``echonats`` command line: run, gateway, worker, migrate, token, stack, config."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from echonats.model.errors import ConfigError, EchonatsError
from echonats.settings import Settings, load_settings, variables

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echonats", description="Real-time chat backend over NATS JetStream."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="gateway(s) + worker; starts a private stack for services without a URL")
    run.add_argument(
        "--gateways",
        type=_gateway_count,
        default=1,
        help="gateway processes, all serving ECHONATS_GATEWAY_PORT (`auto`: one per core); "
        "gateway K also answers on PORT+K alone, e.g. for its /metrics",
    )
    run.add_argument(
        "--ephemeral",
        action="store_true",
        help="keep the local services' data in temp folders, deleted on exit (default: ECHONATS_DATA_DIR)",
    )

    gateway = sub.add_parser(
        "gateway", help="serve the REST API and WebSocket (needs the three service URLs)"
    )
    gateway.add_argument(
        "--listen-fd",
        type=int,
        action="append",
        default=[],
        metavar="FD",
        help="serve on this inherited listening socket instead of binding ECHONATS_GATEWAY_PORT "
        "(repeatable; how `echonats run --gateways N` shares one port)",
    )
    sub.add_parser("worker", help="run the stream consumers (needs the three service URLs)")
    sub.add_parser("migrate", help="apply pending SQL migrations to ECHONATS_DATABASE_URL")

    token = sub.add_parser("token", help="mint a development JWT (HS256, ECHONATS_JWT_SECRET)")
    token.add_argument("--tenant", help="tenant id (claim ECHONATS_JWT_TENANT_CLAIM)")
    token.add_argument("--user", required=True, help="user id (the `sub` claim)")
    token.add_argument("--name", help="display name (the `name` claim)")
    token.add_argument("--role", action="append", default=[], help="role, repeatable (e.g. platform-admin)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")

    stack = sub.add_parser("stack", help="local services only")
    stack.add_argument("action", choices=["up"], help="start them, print their URLs, stop on Ctrl-C")
    stack.add_argument("--ephemeral", action="store_true", help="temp folders instead of ECHONATS_DATA_DIR")

    issuer = sub.add_parser(
        "issuer", help="a local OIDC issuer with Keycloak's paths, for development only (no passwords)"
    )
    issuer.add_argument("--host", default="127.0.0.1", help="bind address")
    issuer.add_argument("--port", type=int, default=18080, help="port (18080: EchoPulse's Keycloak)")
    issuer.add_argument("--public-url", help="the URL clients use (default http://HOST:PORT): tokens' iss")
    issuer.add_argument(
        "--cors-origin", action="append", default=[], help="allowed front-end origin, repeatable"
    )

    config = sub.add_parser("config", help="list configuration variables")
    config.add_argument("--markdown", action="store_true", help="as the README table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(os.environ)
        return _dispatch(args, settings)
    except ConfigError as exc:
        print(f"echonats: invalid configuration: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except EchonatsError as exc:
        print(f"echonats: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from echonats.logs import configure_logging

    command: str = args.command
    if command == "config":
        print(config_table(markdown=args.markdown))
        return 0
    if command == "token":
        return _token(args, settings)
    configure_logging(settings.log)
    if command == "migrate":
        from echonats.bootstrap.migrate import migrate

        _, database_url, _ = settings.require_service_urls()
        applied = migrate(database_url)
        print(f"applied migrations: {applied or 'none pending'}")
        return 0
    if command == "gateway":
        from echonats.bootstrap.gateway import serve_gateway

        return serve_gateway(settings, inherited_fds=args.listen_fd)
    if command == "worker":
        from echonats.bootstrap.worker import run_worker

        return run_worker(settings)
    if command == "stack":
        return _stack_up(None if args.ephemeral else Path(settings.local.data_dir))
    if command == "issuer":
        return _issuer(args)
    if command == "run":
        from echonats.devstack.supervisor import run_all

        return run_all(settings, gateways=args.gateways, ephemeral=args.ephemeral)
    raise AssertionError(command)


def _issuer(args: argparse.Namespace) -> int:
    import uvicorn

    from echonats.issuer import create_issuer_app

    public_url = args.public_url or f"http://{args.host}:{args.port}"
    print(
        f"echonats issuer at {public_url}/realms/<realm> — FOR LOCAL DEVELOPMENT ONLY: it signs in "
        "anyone who types a name. Point ECHONATS_JWT_JWKS_URL at "
        f"{public_url}/realms/<realm>/protocol/openid-connect/certs.",
        file=sys.stderr,
    )
    app = create_issuer_app(public_url, cors_origins=args.cors_origin or None)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from echonats.adapters.dev_tokens import mint_dev_token

    if not settings.auth.jwt_secret:
        print(
            "echonats: ECHONATS_JWT_SECRET unset; signing with the local-development secret", file=sys.stderr
        )
    print(
        mint_dev_token(
            settings.auth,
            tenant_id=args.tenant,
            user_id=args.user,
            name=args.name,
            roles=args.role,
            ttl_s=args.ttl,
        )
    )
    return 0


def _gateway_count(value: str) -> int:
    if value == "auto":
        return len(os.sched_getaffinity(0))  # the cores this process may run on
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or `auto`, got {value!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return count


def _stack_up(data_dir: Path | None) -> int:
    from echonats.devstack.stack import LocalStack

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a closed terminal too: clean up
        signal.signal(signum, lambda *_: stop.set())
    if data_dir is not None:
        print(f"# data: {data_dir.resolve()} (kept; --ephemeral for temp folders)", flush=True)
    with LocalStack(data_dir=data_dir) as urls:
        for key, value in urls.as_env().items():
            print(f"export {key}={value}")
        print(f"# NATS monitoring: {urls.nats_monitor_url}   (Ctrl-C stops everything)", flush=True)
        stop.wait()
    return 0


def config_table(*, markdown: bool) -> str:
    rows = variables()
    if not markdown:
        return "\n".join(f"{v.name:34} {v.type_name:16} default={v.default!s:20} {v.help}" for v in rows)
    lines = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for v in rows:
        default = "—" if v.default is None else f"`{v.default}`"
        lines.append(f"| `{v.name}` | {v.type_name} | {default} | {v.help} |")
    return "\n".join(lines)

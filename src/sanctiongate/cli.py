"""``sanctiongate``: run the worker or the API; manage keys, topics, the index, the local stack."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from .logs import configure as configure_logging
from .settings import get_settings


def _worker(args: argparse.Namespace) -> int:
    # uvloop, as the API. faust reads ``--loop`` from argv when it is first imported (in
    # create_app), before the argv below exists: the policy is set here instead. Ingest ran
    # ~10% faster on it (bench/README.md).
    import mode.loop

    mode.loop.use("uvloop")
    from .streams.app import create_app

    settings = get_settings()
    app = create_app(settings)
    # faust's own CLI binds its web server to 0.0.0.0 unless told: keep it on our host/port.
    sys.argv = [
        "sanctiongate-worker",
        "worker",
        "--loglevel",
        args.loglevel.lower(),
        "--web-host",
        settings.worker_web_host,
        "--web-port",
        str(settings.worker_web_port),
    ]
    app.main()
    return 0


def _api(args: argparse.Namespace) -> int:
    from .logs import dict_config
    from .multiproc import prepare_api_metrics_dir

    settings = get_settings()
    port = args.port or settings.api_port
    # Before uvicorn imports the app (and prometheus_client): all API processes share the sums.
    prepare_api_metrics_dir(settings.run_dir, port)
    import uvicorn

    from .api.http11 import FastCheckProtocol

    uvicorn.run(
        "sanctiongate.api.app:create_app",
        factory=True,
        host=args.host or settings.api_host,
        port=port,
        workers=args.workers or settings.api_workers,
        log_level=args.loglevel.lower(),
        log_config=dict_config(args.loglevel),
        access_log=False,
        # Named, not "auto": a missing uvloop or httptools must fail the start, not quietly
        # halve the throughput (bench/api.py runs its baseline under the same two). httptools
        # with a response's head and body in one write, and the checks answered by the
        # protocol itself (api.http11).
        loop="uvloop",
        http=FastCheckProtocol,
    )
    return 0


def _topics(_: argparse.Namespace) -> int:
    from .topics import ensure_topics

    changes = asyncio.run(ensure_topics(get_settings()))
    print(changes.summary() or "all topics exist, as they should be")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from .keys import KeyStore

    store = KeyStore(get_settings().keys_file)
    if args.keys_command == "create":
        scopes = [s.strip() for s in args.scope.split(",") if s.strip()]
        key, token = store.create(args.department, scopes, args.label or "")
        print(
            json.dumps(
                {
                    "key_id": key.key_id,
                    "department": key.department,
                    "scopes": key.scopes,
                    "token": token,
                },
                ensure_ascii=False,
            )
        )
        print("the token is shown once; only its hash is stored in", store.path, file=sys.stderr)
    elif args.keys_command == "list":
        for key in store.all():
            state = f"revoked {key.revoked_at}" if key.revoked_at else "active"
            print(f"{key.key_id}  {key.department}  {','.join(key.scopes)}  {state}  {key.label}")
    elif args.keys_command == "revoke":
        if not store.revoke(args.key_id):
            print(f"no key {args.key_id}", file=sys.stderr)
            return 1
        print(f"revoked {args.key_id}")
    return 0


def _rebuild(_: argparse.Namespace) -> int:
    from .streams.rebuild import RebuildBusy, Rebuilder
    from .streams.runtime import Runtime

    async def run() -> str:
        runtime = Runtime.create(get_settings())
        rebuilder = Rebuilder(runtime.settings, runtime.index, "cli")
        try:
            gen = await rebuilder.rebuild("requested")
            await rebuilder.settle()  # drop the replaced generation before exiting
            return gen
        finally:
            await runtime.redis.aclose()

    try:
        print("serving generation:", asyncio.run(run()))
    except RebuildBusy:
        print("another rebuild is running", file=sys.stderr)
        return 1
    return 0


def _publish(args: argparse.Namespace) -> int:
    from .devstack import publish_file

    count = asyncio.run(publish_file(get_settings(), Path(args.file), args.topic))
    print(f"published {count} messages")
    return 0


def _load(args: argparse.Namespace) -> int:
    from .loader import run_load

    return run_load(get_settings(), args)


def _schemas(args: argparse.Namespace) -> int:
    from .schemas import write

    for path in write(Path(args.out)):
        print(path)
    return 0


def _up(args: argparse.Namespace) -> int:
    from .devstack import up

    return up(get_settings(), foreground=args.foreground)


def _down(_: argparse.Namespace) -> int:
    from .devstack import down

    return down(get_settings())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sanctiongate", description=__doc__)
    parser.add_argument("--loglevel", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run a stream worker (faust)").set_defaults(func=_worker)
    api = sub.add_parser("api", help="run the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--workers", type=int)
    api.set_defaults(func=_api)
    sub.add_parser(
        "topics", help="create the Kafka topics; raise the message limit of older ones"
    ).set_defaults(func=_topics)
    sub.add_parser("rebuild", help="replay the topics into a fresh index").set_defaults(
        func=_rebuild
    )

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create")
    create.add_argument("--department", required=True)
    create.add_argument("--scope", default="*", help="matter categories, comma separated; * = all")
    create.add_argument("--label")
    keys_sub.add_parser("list")
    revoke = keys_sub.add_parser("revoke")
    revoke.add_argument("key_id")
    keys.set_defaults(func=_keys)

    publish = sub.add_parser("publish", help="publish a JSONL file of messages to a topic")
    publish.add_argument("file")
    publish.add_argument("--topic", help="default: by each message's schema")
    publish.set_defaults(func=_publish)

    load = sub.add_parser("load", help="bulk-load court dishonest-debtor records (CSV or JSONL)")
    load.add_argument("file")
    load.add_argument("--source", default="court:spc", help="the source named on each change")
    load.add_argument("--rejects", help="file for rejected rows (default: FILE.rejects.jsonl)")
    load.add_argument("--dry-run", action="store_true", help="validate only, publish nothing")
    load.set_defaults(func=_load)

    schemas = sub.add_parser("schemas", help="write the JSON Schemas and OpenAPI document")
    schemas.add_argument("--out", default="schemas")
    schemas.set_defaults(func=_schemas)

    up = sub.add_parser("up", help="start broker, Redis, worker, API and sample data locally")
    up.add_argument("--foreground", action="store_true", help="stay attached; Ctrl-C stops all")
    up.set_defaults(func=_up)
    sub.add_parser("down", help="stop the local stack").set_defaults(func=_down)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.loglevel)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

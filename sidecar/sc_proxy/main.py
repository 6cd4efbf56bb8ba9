"""``sc-proxy``: the Service Connect sidecar proxy.

    sc-proxy --config FILE [run]              serve (default)
    sc-proxy --config FILE check-config       validate the file and exit (0 valid, 2 invalid)
    sc-proxy --config FILE install-redirect   install the iptables rules (init container, needs NET_ADMIN)
    sc-proxy wait-ready --admin-port N        exit once the proxy answers /ready (the start-up gate)

An invalid file is refused before anything is bound (exit 2, one line per bad field). SIGTERM or SIGINT
drains: ``/ready`` turns 503, listeners stop accepting, connections finish their in-flight request (up to
``drainSeconds``), idle keep-alive connections close, the rest is aborted; then, if ``lingerSeconds`` have
not passed since the signal, the process waits out the rest (its address keeps refusing, rather than
vanishing, while callers drop it from their endpoint lists); exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
import time
from collections.abc import Sequence

from sc_proxy import compiled, waitready
from sc_proxy.admin import AdminState, close_all, start_admin
from sc_proxy.config import ConfigError, ProxyConfig, dump_config, load_config
from sc_proxy.listeners import Listeners, build_plan
from sc_proxy.metrics import REGISTRY, identify_proxy, publish_config_version

log = logging.getLogger("sc_proxy")

#: How long readiness waits for every endpoint's first successful resolution (retried quickly meanwhile,
#: see sc_proxy.discovery); after this, serve with what is known. Envoy's initial_fetch_timeout is 15 s; on a
#: real node the records of a server that just turned Ready appeared within a few seconds.
INITIAL_DISCOVERY_WAIT = 10.0


async def serve(config: ProxyConfig, started: float) -> int:
    loop = asyncio.get_running_loop()
    identify_proxy(config.service.name, config.service.cluster, REGISTRY)
    try:
        plan = build_plan(config, REGISTRY)
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        return 2
    publish_config_version(config.version, REGISTRY)
    listeners = Listeners(config, plan)
    stop = asyncio.Event()
    config_json = (dump_config(config) + "\n").encode()

    def drain(inbound_only: bool) -> None:
        state.draining = not inbound_only or state.draining
        kinds = ("ingress",) if inbound_only else ("ingress", "egress")
        log.info("drain requested (%s)", "inbound only" if inbound_only else "all listeners")
        listeners.stop_accepting(kinds)
        if not inbound_only:
            plan.lifecycle.start_drain()

    def render_metrics() -> bytes:
        # Ejections end lazily on the next pick; settle them so an idle proxy reports the truth.
        for cluster in plan.clusters.values():
            cluster.ejected_hosts()
        return REGISTRY.render()

    state = AdminState(
        version=config.version,
        config_json=lambda: config_json,
        metrics=render_metrics,
        drain=drain,
    )
    admin = await start_admin(
        state, config.admin.address, config.admin.port, config.admin.local_address, config.admin.local_port
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await listeners.bind_all()
    except OSError as exc:
        log.error("%s", exc.strerror or exc)
        close_all(admin)
        return 1
    # Every source starts now; only those of other services' endpoints hold /ready back (see build_plan).
    starting = [loop.create_task(s.start()) for s in plan.sources]
    waited = [t for t, s in zip(starting, plan.sources, strict=True) if s not in plan.own_sources]
    if waited:
        done = asyncio.gather(*waited)
        try:
            await asyncio.wait_for(asyncio.shield(done), INITIAL_DISCOVERY_WAIT)
        except TimeoutError:
            log.warning(
                "initial discovery still running after %.0f s; serving meanwhile", INITIAL_DISCOVERY_WAIT
            )
    # What start-up built lives as long as the process: take it out of the cyclic collector's sight, so its
    # rare full passes scan only what requests allocate (a full pass over ~35 000 start-up objects takes
    # 10-30 ms, a latency spike for every request in flight; after the freeze, microseconds). No collect()
    # first: start-up leaves about a dozen unreachable objects, not worth 20 ms of time to ready.
    gc.freeze()
    state.ready = True
    log.info(
        "ready in %.0f ms: %s/%s config %s, %d listeners, modules: %s",
        (time.monotonic() - started) * 1000,
        config.service.namespace or "-",
        config.service.name or "-",
        config.version,
        len(listeners.servers),
        compiled.build(loaded_only=True),  # whether the wheel's mypyc extensions are what runs
    )
    await stop.wait()
    stopped = time.monotonic()

    # Drain: out of Services first, then no new connections, then let in-flight work finish.
    state.draining = True
    listeners.stop_accepting()
    plan.lifecycle.start_drain()
    active = plan.lifecycle.active
    log.info("draining %d connections for up to %.0f s", active, config.drain_seconds)
    if not await plan.lifecycle.wait_closed(config.drain_seconds):
        log.warning("drain time over: aborting %d connections", plan.lifecycle.active)
        plan.lifecycle.abort_all()
    for source in plan.sources:
        await source.close()
    linger = config.linger_seconds - (time.monotonic() - stopped)
    if linger > 0:
        log.info("drained; refusing connections for %.1f s more (lingerSeconds) before exiting", linger)
        await asyncio.sleep(linger)
    close_all(admin)
    log.info("drained; exiting")
    return 0


def _install_loop_policy() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _parser() -> argparse.ArgumentParser:
    def common(suppress: bool) -> argparse.ArgumentParser:
        # Subcommands repeat the options without defaults, so "--config X sub" and "sub --config X" both work.
        p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS if suppress else None)
        p.add_argument("--config", "-c", help="configuration file (YAML or JSON)")
        levels = ["debug", "info", "warning", "error"]
        if suppress:
            p.add_argument("--log-level", choices=levels)
        else:
            p.add_argument("--log-level", choices=levels, default="info")
        return p

    parser = argparse.ArgumentParser(
        prog="sc-proxy", description=(__doc__ or "").split("\n\n")[0], parents=[common(False)]
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", parents=[common(True)], help="serve (default)")
    sub.add_parser("check-config", parents=[common(True)], help="validate the configuration and exit")
    inst = sub.add_parser("install-redirect", parents=[common(True)], help="install the iptables rules")
    inst.add_argument(
        "--dry-run", action="store_true", help="print the iptables-restore input, change nothing"
    )
    waitready.add_arguments(
        sub.add_parser("wait-ready", help="wait until the local proxy is ready (no config)")
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "wait-ready":
        return waitready.run(args)
    if not args.config:
        print("sc-proxy: --config FILE is required", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"sc-proxy: invalid configuration {args.config}:\n{exc}", file=sys.stderr)
        return 2
    command = args.command or "run"
    if command == "check-config":
        print(f"configuration {args.config} is valid (version {config.version})")
        return 0
    if command == "install-redirect":
        from sc_proxy.iptables import install_redirect

        return install_redirect(config, dry_run=args.dry_run)
    _install_loop_policy()
    return asyncio.run(serve(config, started))


if __name__ == "__main__":
    sys.exit(main())

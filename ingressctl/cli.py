"""The command line: `ingressctl run` (the controller) and `ingressctl render` (dry run).

Every flag of `run` can also be set by an environment variable INGRESSCTL_<FLAG> (upper case,
dashes as underscores); a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ingressctl import __version__, check, flags
from ingressctl.cache import Cache
from ingressctl.certs import self_signed
from ingressctl.config import GlobalOptions, TenancyPolicy
from ingressctl.controller import Controller, Publisher
from ingressctl.dataplane.apply import Applier
from ingressctl.dataplane.luaapi import LuaApi
from ingressctl.dataplane.monitor import RouteMetrics
from ingressctl.dataplane.nginx import Nginx, worker_user
from ingressctl.dataplane.paths import Paths, lua_dir
from ingressctl.dataplane.render import Renderer, UnsafeValue, open_files_limit, quote
from ingressctl.dataplane.version import OLDEST, NginxVersion, UnknownVersion, detect, parse
from ingressctl.health import start_health_server
from ingressctl.logfields import setup_logging
from ingressctl.metrics import Metrics
from ingressctl.plan import Action, Plan, make_plan
from ingressctl.sources import kubeflags
from ingressctl.sources.base import Source
from ingressctl.sources.externalname import REFUSED, ExternalNameSource, Policy, dns_lookup
from ingressctl.sources.manifests import ManifestsSource
from ingressctl.translate import Settings, Translator, translate

log = logging.getLogger("ingressctl")


def add_common(parser: argparse.ArgumentParser) -> None:
    flags.add_flag(parser, "--manifests", help="Read objects from this folder of YAML manifests (watched for changes)")
    flags.add_flag(parser, "--http-port", type=flags.port, default=80, help="Port nginx serves HTTP on")
    flags.add_flag(parser, "--https-port", type=flags.port, default=443, help="Port nginx serves HTTPS on")
    flags.add_flag(parser, "--listen-address", default="", help="Address nginx listens on ('' = all addresses)")
    flags.add_flag(
        parser,
        "--work-dir",
        default=None,
        help="Where nginx.conf, certificates, pid and sockets go (default: a private temporary directory)",
    )
    flags.add_flag(
        parser,
        "--controller-class",
        default="ingressctl.io/controller",
        help="IngressClass spec.controller value this controller serves",
    )
    flags.add_flag(
        parser,
        "--ingress-class",
        default="ingressctl",
        help="Value of the legacy kubernetes.io/ingress.class annotation this controller serves",
    )
    flags.add_flag(
        parser,
        "--watch-ingress-without-class",
        boolean=True,
        help="Also serve Ingresses with no class at all",
    )
    flags.add_flag(
        parser,
        "--default-ssl-certificate",
        type=flags.namespaced_name,
        default=None,
        help="NS/NAME of the kubernetes.io/tls Secret served when no other certificate applies "
        "(default: a self-signed certificate generated at start)",
    )
    flags.add_flag(
        parser,
        "--default-backend-service",
        type=flags.namespaced_name,
        default=None,
        help="NS/NAME of the Service answering unmatched hosts and paths (default: a built-in 404)",
    )
    flags.add_flag(
        parser,
        "--configmap",
        type=flags.namespaced_name,
        default=None,
        help="NS/NAME of the ConfigMap with global options",
    )
    flags.add_flag(
        parser,
        "--allow-cross-namespace-hosts",
        boolean=True,
        help="Let Ingresses of different namespaces share a host, as ingress-nginx did (single-team clusters; "
        "the ConfigMap's allow-cross-namespace-hosts overrides it)",
    )
    flags.add_flag(
        parser,
        "--catch-all-namespaces",
        type=flags.namespaces,
        default=TenancyPolicy().catch_all_namespaces,
        help="Comma-separated namespaces whose defaultBackend-only Ingresses and host-less rules serve unnamed "
        "hosts (the ConfigMap's catch-all-namespaces overrides it)",
    )
    flags.add_flag(
        parser, "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="Log level"
    )
    flags.add_flag(
        parser,
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="Controller logs and nginx's access log as text, or as one JSON object per line (same field names)",
    )


def _networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in value.split(",") if p.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_externalname_flags(parser: argparse.ArgumentParser) -> None:
    flags.add_flag(
        parser,
        "--externalname-dns-server",
        default="",
        help="DNS server (IP or IP:PORT) for ExternalName Services ('' = the system's resolv.conf)",
    )
    flags.add_flag(
        parser,
        "--service-cidr",
        type=_networks,
        default=(),
        help="The cluster's Service range(s), comma-separated: ExternalName answers inside are refused",
    )
    flags.add_flag(
        parser,
        "--externalname-allow-cidr",
        type=_networks,
        default=(),
        help="Networks ExternalName answers may use although refused by default (loopback, link-local, "
        "metadata, --service-cidr), comma-separated",
    )


def externalname_source(args: argparse.Namespace, inner: Source) -> ExternalNameSource:
    server = args.externalname_dns_server
    host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
    lookup = dns_lookup(nameserver=host or server, port=int(port or 53)) if server else dns_lookup()
    policy = Policy(refused=(*REFUSED, *args.service_cidr), allowed=args.externalname_allow_cidr)
    return ExternalNameSource(inner, lookup, policy)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingressctl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ingressctl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run the controller", description="Run the controller and nginx.")
    add_common(run)
    flags.add_flag(run, "--health-port", type=flags.port, default=10254, help="Port of /healthz, /readyz and /metrics")
    flags.add_flag(run, "--health-address", default="", help="Address of the health server ('' = all addresses)")
    flags.add_flag(run, "--nginx-binary", default="nginx", help="The nginx executable")
    flags.add_flag(
        run,
        "--reload-timeout",
        type=flags.seconds,
        default=60.0,
        metavar="SECONDS",
        help="How long a reloaded nginx.conf may take to go live before the apply counts as failed and is retried",
    )
    flags.add_flag(
        run,
        "--skip-reload-test",
        boolean=True,
        default=True,
        help="Reload without nginx -t first: the reload is its own test (nginx keeps the running "
        "configuration if it cannot load the new one; the refusal is read from its log and reported like "
        "a failed test). Halves a host change at thousands of Ingresses; =false runs nginx -t before each "
        "reload too",
    )
    kubeflags.add_arguments(run)
    add_externalname_flags(run)
    render = sub.add_parser("render", help="Print the nginx.conf (or backends JSON) without starting anything")
    add_common(render)
    render.add_argument("--backends", action="store_true", help="Print the backends JSON for the Lua API instead")
    render.add_argument(
        "--diff",
        metavar="OTHER_DIR",
        default=None,
        help="Print what would change from --manifests to OTHER_DIR, and whether it would reload, instead",
    )
    render.add_argument(
        "--nginx-version",
        type=_version,
        default=OLDEST,
        help=f"Render for this nginx version, e.g. 1.26.3 (default {OLDEST}: `listen ... http2` before 1.25.1)",
    )
    check.add_arguments(
        sub.add_parser(
            "check",
            help="Migration report: how ingressctl would serve each Ingress and its annotations",
            description=check.__doc__,
        )
    )
    return parser


def _version(text: str) -> NginxVersion:
    try:
        return parse(f"nginx version: nginx/{text}")
    except UnknownVersion:
        raise argparse.ArgumentTypeError(f"not an nginx version: {text!r}") from None


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        fallback_certificate=self_signed(),
        controller_class=args.controller_class,
        ingress_class=args.ingress_class,
        watch_without_class=args.watch_ingress_without_class,
        default_backend_service=args.default_backend_service,
        default_ssl_certificate=args.default_ssl_certificate,
        configmap=args.configmap,
        options=GlobalOptions(
            http_port=args.http_port,
            https_port=args.https_port,
            listen_address=args.listen_address,
            access_log_json=args.log_format == "json",
        ),
        tenancy=TenancyPolicy(
            allow_cross_namespace_hosts=args.allow_cross_namespace_hosts,
            catch_all_namespaces=args.catch_all_namespaces,
        ),
    )


def _load(folder: str) -> tuple[ManifestsSource, Cache]:
    source = ManifestsSource(folder)
    cache = Cache()
    cache.load(source.load_once())
    return source, cache


def render_command(args: argparse.Namespace) -> int:
    if not args.manifests:
        print("ingressctl render: --manifests DIR is required", file=sys.stderr)
        return 2
    settings = settings_from(args)
    source, cache = _load(args.manifests)
    config = translate(cache.snapshot(), settings)
    if args.diff:
        other_source, other_cache = _load(args.diff)
        other = translate(other_cache.snapshot(), settings)
        print_plan(make_plan(config, other))
        source, config = other_source, other  # the problems reported are those of the new state
    elif args.backends:
        print(json.dumps(config.backends_document(), indent=2))
    else:
        work = args.work_dir or "/var/run/ingressctl"
        renderer = Renderer(paths=Paths(work=work, lua=str(lua_dir())), version=args.nginx_version)
        print(renderer.render(config.static).text, end="")
    for _, error in sorted(source.errors.items()):
        print(f"error: {error}", file=sys.stderr)
    for problem in config.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if config.problems or source.errors else 0


def print_plan(plan: Plan) -> None:
    """What `render --diff` prints: the verdict, then one line per change that needs a reload."""
    lua = plan.updated
    verdict = {
        Action.NOTHING: "no change: nothing to do",
        Action.LUA: f"{lua} change: {plan.how}",
        Action.RELOAD: f"would reload ({', '.join(plan.reasons)})",
    }[plan.action]
    if plan.reload and lua:
        verdict += f", {lua} change too"
    print(verdict)
    for change in plan.changes:
        print(f"  {change}")


async def run_controller(args: argparse.Namespace) -> int:
    async with contextlib.AsyncExitStack() as stack:
        source: Source
        publishers: Sequence[Publisher] = ()
        # Ends with an error if the write-back side (API mode only) fails; never ends otherwise.
        jobs: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if args.manifests:
            source = ManifestsSource(args.manifests)
        else:
            try:
                from ingressctl import apimode  # only API runs pay for kubernetes_asyncio

                mode = await apimode.build(args)
            except ValueError as exc:  # no usable client configuration, inconsistent flags
                log.error("%s", exc)
                return 2
            source, publishers = mode.source, mode.publishers
            jobs = await stack.enter_async_context(mode.running())
        return await _serve(args, source=externalname_source(args, source), publishers=publishers, jobs=jobs)
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the stack may swallow exceptions)


async def _serve(
    args: argparse.Namespace, *, source: Source, publishers: Sequence[Publisher], jobs: asyncio.Future[None]
) -> int:
    created = args.work_dir is None
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="ingressctl-")).resolve()
    run_dir = _run_dir()
    paths = Paths(work=str(work), lua=str(lua_dir()), run=str(run_dir) if run_dir else "")
    # Every path is written into nginx.conf, quoted: one the template refuses (a space, a quote...)
    # would make every render fail, so the controller would run forever without serving.
    for what, value in [("--work-dir", paths.work), ("the Lua directory", paths.lua), ("the socket dir", paths.run)]:
        try:
            quote(value)
        except UnsafeValue:
            log.error(
                "%s %r cannot be written into nginx.conf: use a path without whitespace, quotes, ';', "
                "'{', '}', '#' or '$'",
                what,
                value,
            )
            if run_dir:
                shutil.rmtree(run_dir, ignore_errors=True)
            if created:
                shutil.rmtree(work, ignore_errors=True)
            return 2
    metrics = Metrics()
    nginx = Nginx(binary=args.nginx_binary, paths=paths, error_log_as_records=args.log_format == "json")
    lua = LuaApi(paths.socket)
    version = nginx_version(args.nginx_binary)
    renderer = Renderer(paths=paths, user=nginx.user, version=version, max_open_files=open_files_limit())
    applier = Applier(
        nginx=nginx,
        renderer=renderer,
        lua=lua,
        metrics=metrics,
        live_timeout=args.reload_timeout,
        test_reloads=not args.skip_reload_test,
    )
    settings = settings_from(args)
    controller = Controller(
        source=source,
        translator=Translator(settings),
        applier=applier,
        metrics=metrics,
        publishers=(*publishers, RouteMetrics(lua=lua, metrics=metrics)),
    )
    health = await start_health_server(
        host=args.health_address,
        port=args.health_port,
        alive=lambda: not nginx.died(),
        ready=lambda: controller.ready,
        metrics=metrics,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "ingressctl %s: work dir %s, http %d, https %d, health %d",
        __version__,
        work,
        args.http_port,
        args.https_port,
        args.health_port,
    )
    task = asyncio.create_task(controller.run(), name="controller")
    stopper = asyncio.create_task(stop.wait())
    watchdog = asyncio.create_task(_watch_nginx(nginx))
    code = 0
    try:
        waiting: list[asyncio.Future[Any]] = [task, stopper, watchdog, jobs]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if task.done() and task.exception():
            log.error("controller stopped: %s", task.exception())
            code = 1
        if jobs.done() and not jobs.cancelled() and jobs.exception():
            log.error("write-back stopped: %s", jobs.exception())
            code = 1
        if watchdog.done():
            log.error("nginx exited unexpectedly (status %s); stopping", nginx.process and nginx.process.returncode)
            code = 1
    finally:
        log.info("shutting down")
        for t in (task, stopper, watchdog):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        # Let in-flight requests finish as long as a reload would let old workers drain.
        drain = applier.static.options.worker_shutdown_timeout if applier.static else 10
        await nginx.stop(timeout=drain + 5)
        await lua.close()
        await health.cleanup()
        if created:
            shutil.rmtree(work, ignore_errors=True)
        if run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    return code


def nginx_version(binary: str) -> NginxVersion:
    """The version of the nginx we run, once at start; the oldest supported one's forms if unknown."""
    try:
        version = detect(binary)
    except UnknownVersion as exc:
        log.warning("%s; rendering for nginx %s", exc, OLDEST)
        return OLDEST
    log.info("nginx %s (%s)", version, "http2 on;" if version.http2_directive else "listen ... http2")
    return version


def _run_dir() -> Path | None:
    """A directory of its own for the sockets the nginx workers connect to, when they run as
    another user (we are root): the work dir's parents may be private to us. None: the work dir."""
    if worker_user() is None:
        return None
    try:
        return Path(tempfile.mkdtemp(prefix="ingressctl-run-"))
    except OSError as exc:  # e.g. no writable temp dir: the work dir must then be reachable
        log.warning("no temp dir for the worker sockets (%s); using the work dir", exc)
        return None


async def _watch_nginx(nginx: Nginx) -> None:
    """Returns when the nginx master that was started exits: the controller cannot serve then.
    Workers a killed master left behind (they would go on serving) are stopped first."""
    while not nginx.died():
        nginx.worker_pids()  # remembers the current workers
        await asyncio.sleep(0.2)
    nginx.stop_orphans()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return check.run(args)
    setup_logging(level=args.log_level, json_lines=args.log_format == "json")
    if args.command == "render":
        return render_command(args)
    return asyncio.run(run_controller(args))


if __name__ == "__main__":
    sys.exit(main())

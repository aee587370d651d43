"""``python -m harness up|down|ps|logs|images|doctor|mutation|mutation-sim`` — hand exploration
and outside tools.

``up`` starts a cluster, waits until ready, prints one JSON object (``--json``) and leaves it
running (owner label ``keep``: the sweeper never touches it); ``down`` removes it; ``doctor``
checks the machine without starting anything (``harness.doctor``); ``mutation`` runs the
failover suite against each broken build in ``mutations/`` (``harness.mutation.suite``, its own
options: ``python -m harness mutation --help``); ``mutation-sim`` runs the simulator against
each of them (``harness.mutation.simulator``).

Every command that uses Docker takes ``--docker-host URL`` (repeatable; else
``MC_DOCKER_HOSTS``; else the local engine, started if need be): ``up`` starts its cluster on
the first engine given (images built where the run starts and shipped there), ``ps``,
``logs`` and ``down`` cover every engine given (:mod:`harness.cluster.engines`).

The Docker SDK is imported by the commands that use it, so ``doctor`` also runs (and says what
is missing) under an interpreter without the project's packages, e.g. Debian's python3.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from harness.spec import TIMINGS, SpecError, topology


def _progress(quiet: bool):
    def say(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)
    return say


def _clients(args: argparse.Namespace, quiet: bool) -> list[tuple[str, object]]:
    """``(url, client)`` of every engine given (``--docker-host``, else ``MC_DOCKER_HOSTS``),
    or of the local engine (url ``local``) when none is."""
    from harness.cluster.engine import EngineConfig, ensure_engine
    from harness.cluster.engines import engines_from
    engines = engines_from(args.docker_host or [], flag="--docker-host")
    if not engines:
        return [("local", ensure_engine(_progress(quiet)))]
    return [(e.url, ensure_engine(_progress(quiet), EngineConfig(base_url=e.url, start=False)))
            for e in engines]


def _build_engine(clients: list[tuple[str, object]], quiet: bool) -> object:
    """Where images are built (:func:`harness.cluster.engine.build_engine`)."""
    from harness.cluster.engine import build_engine
    if clients[0][0] == "local":
        return clients[0][1]
    return build_engine([u for u, _ in clients], dict(clients), _progress(quiet))


def cmd_up(args: argparse.Namespace) -> int:
    from harness.cluster.bringup import Cluster, ClusterStartError
    from harness.cluster.engine import EngineUnavailable
    try:
        spec = topology(masters=args.masters, coreapps=args.coreapps, webapps=args.webapps,
                        shards=args.shards, timing=args.timing,
                        **{k: v for k, v in (("heartbeat_interval", args.heartbeat_interval),
                                             ("unhealthy_interval", args.unhealthy_interval))
                           if v is not None})
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        clients = _clients(args, args.quiet)
        client, source = clients[0][1], _build_engine(clients, args.quiet)
        cluster = Cluster(spec, keep=True, progress=_progress(args.quiet), client=client,
                          image_source=None if source is client else source)
        cluster.start(timeout=args.timeout)
    except (ClusterStartError, EngineUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    info = cluster.describe()
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(f"cluster {info['run_id']} ready: {info['webapp_url']} "
              f"(admin / {info['admin']['password']}); remove with: "
              f"python -m harness down --run-id {info['run_id']}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from harness.cluster import cleanup
    if not args.all and not args.run_id:
        print("error: give --run-id ID or --all", file=sys.stderr)
        return 2
    for url, client in _clients(args, args.quiet):
        runs = cleanup.runs(client)
        for run_id in (list(runs) if args.all else [args.run_id] if args.run_id in runs else []):
            n = cleanup.remove_run(client, run_id)
            print(f"{run_id}: removed {n} resources ({url})")
    return 0


def cmd_ps(args: argparse.Namespace) -> int:
    from harness.cluster import cleanup
    for url, client in _clients(args, True):
        for run_id, owner in sorted(cleanup.runs(client).items()):
            cs = client.api.containers(all=True,
                                       filters={"label": f"{cleanup.LABEL_RUN}={run_id}"})
            running = sum(c.get("State") == "running" for c in cs)
            print(f"{run_id}  owner={owner}  containers={len(cs)} running={running}  "
                  f"engine={url}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from harness.cluster import cleanup
    for _, client in _clients(args, True):
        ids = [args.run_id] if args.run_id else sorted(cleanup.runs(client))
        for run_id in ids:
            cs = client.containers.list(all=True,
                                        filters={"label": f"{cleanup.LABEL_RUN}={run_id}"})
            for c in sorted(cs, key=lambda c: c.name):
                prefix = c.labels.get(cleanup.LABEL_COMPONENT, c.name)
                for line in c.logs(timestamps=True).decode(errors="replace").splitlines():
                    print(f"{prefix:<10} | {line}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from harness.cluster.images import ensure_images, ship_images
    clients = _clients(args, args.quiet)
    source = _build_engine(clients, args.quiet)
    refs = ensure_images(source, progress=_progress(args.quiet))
    for _, client in clients:  # built where the run starts, shipped to the others
        if client is not source:
            ship_images(source, client, refs.values(), _progress(args.quiet))
    for name, ref in refs.items():
        print(f"{name:<10} {ref}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from harness.doctor import main as doctor_main
    return doctor_main()


def cmd_mutation(args: argparse.Namespace) -> int:
    from harness.mutation.suite import main as mutation_main
    return mutation_main(args.args)


def cmd_mutation_sim(args: argparse.Namespace) -> int:
    from harness.mutation.simulator import main as mutation_sim_main
    return mutation_sim_main(args.args)


OWN_OPTIONS = {"mutation": cmd_mutation, "mutation-sim": cmd_mutation_sim}


def _own_argv(argv: Sequence[str] | None) -> tuple[str, list[str]] | None:
    """A subcommand that parses its own options (``--help`` included) and its arguments."""
    words = list(sys.argv[1:] if argv is None else argv)
    return (words[0], words[1:]) if words[:1] and words[0] in OWN_OPTIONS else None


def main(argv: Sequence[str] | None = None) -> int:
    own = _own_argv(argv)
    if own is not None:
        return OWN_OPTIONS[own[0]](argparse.Namespace(args=own[1]))
    p = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a cluster and leave it running")
    up.add_argument("--masters", type=int, default=2)
    up.add_argument("--coreapps", type=int, default=2)
    up.add_argument("--webapps", type=int, default=1)
    up.add_argument("--shards", type=int, default=1)
    up.add_argument("--timing", choices=sorted(TIMINGS), default="ci")
    up.add_argument("--heartbeat-interval", type=int)
    up.add_argument("--unhealthy-interval", type=int)
    up.add_argument("--timeout", type=float, default=180.0)
    up.add_argument("--json", action="store_true", help="print one JSON object")
    up.set_defaults(fn=cmd_up)
    down = sub.add_parser("down", help="remove a cluster")
    down.add_argument("--run-id")
    down.add_argument("--all", action="store_true")
    down.set_defaults(fn=cmd_down)
    ps = sub.add_parser("ps", help="list clusters")
    ps.set_defaults(fn=cmd_ps)
    logs = sub.add_parser("logs", help="every container's log, node-prefixed")
    logs.add_argument("--run-id")
    logs.set_defaults(fn=cmd_logs)
    images = sub.add_parser("images", help="build (or find cached) every image; with several "
                            "engines, build on the first and ship to the others")
    images.set_defaults(fn=cmd_images)
    for cmd in (up, down, ps, logs, images):
        cmd.add_argument("--docker-host", action="append", metavar="URL",
                         help="a Docker engine: unix:///path, tcp://host:port or "
                              "ssh://[user@]host (repeatable; else MC_DOCKER_HOSTS; else the "
                              "local engine)")
    doctor = sub.add_parser("doctor", help="check the engine, images, report tools, .venv and "
                            "disk; say what to do for each missing thing (starts nothing)")
    doctor.set_defaults(fn=cmd_doctor)
    mutation = sub.add_parser("mutation", add_help=False,
                              help="the failover suite against each broken build in mutations/ "
                                   "(options: python -m harness mutation --help)")
    mutation.add_argument("args", nargs=argparse.REMAINDER)
    mutation.set_defaults(fn=cmd_mutation)
    mutation_sim = sub.add_parser("mutation-sim", add_help=False,
                                  help="the simulator against each broken build in mutations/ "
                                       "(options: python -m harness mutation-sim --help)")
    mutation_sim.add_argument("args", nargs=argparse.REMAINDER)
    mutation_sim.set_defaults(fn=cmd_mutation_sim)
    args = p.parse_args(argv)
    if args.fn is cmd_doctor:
        return cmd_doctor(args)
    from harness.cluster.engine import EngineUnavailable
    from harness.cluster.engines import EngineSettingError
    try:
        return args.fn(args)
    except EngineSettingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except EngineUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

"""`python -m lab up|down|status|deps`."""

from __future__ import annotations

import argparse
import json
import sys

import lab
from lab import deps, flavours


def cmd_up(args: argparse.Namespace) -> int:
    from lab.cluster import Lab, LabError

    try:
        the_lab = Lab.up(args.nodes, name=args.name, user=args.user, mirror=not args.no_mirror,
                         log=lambda msg: print(msg, file=sys.stderr), os=args.os,
                         podman=args.podman, bastion=args.bastion)
    except LabError as exc:
        print(f"lab up: {exc}", file=sys.stderr)
        return 1
    print(f"# {the_lab.inventory_path}")
    print(the_lab.inventory_path.read_text(), end="")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from lab.cluster import Lab, LabError

    names = [p.parent.name for p in sorted(lab.lab_root().glob("labs/*/lab.json"))] \
        if args.all else [args.name]
    rc = 0
    for name in names:
        try:
            Lab.attach(name).down()
            print(f"lab {name}: down")
        except LabError as exc:
            print(f"lab down: {exc}", file=sys.stderr)
            rc = 1
    return rc


def cmd_status(args: argparse.Namespace) -> int:
    from lab.cluster import Lab

    found = False
    for path in sorted(lab.lab_root().glob("labs/*/lab.json")):
        found = True
        the_lab = Lab.attach(path.parent.name)
        state = "up" if the_lab.alive() else "stopped (stale)"
        print(f"{the_lab.name}: {state}, {len(the_lab.nodes)} {the_lab.os} nodes"
              + (" (podman)" if the_lab.podman else "")
              + (f" + bastion {the_lab.bastion.address}" if the_lab.bastion else "")
              + f", block 127.0.{the_lab.block}.x, inventory {the_lab.inventory_path}")
        if args.verbose:
            print(json.dumps(json.loads(path.read_text()), indent=1))
    if not found:
        print(f"no lab under {lab.lab_root()}")
    return 0


def cmd_deps(args: argparse.Namespace) -> int:
    return deps.main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start N nodes, write and print the inventory")
    up.add_argument("--nodes", "-n", type=int, default=3)
    up.add_argument("--name", default="default", help="lab name (default: 'default', 127.0.0.x)")
    up.add_argument("--user", default="lab", choices=lab.LOGIN_USERS,
                    help="login user written in the inventory")
    up.add_argument("--no-mirror", action="store_true", help="do not build/serve the yum mirror")
    up.add_argument("--os", default=flavours.DEFAULT, choices=flavours.NAMES,
                    help="node flavour: el7 (CentOS 7.9), el8 (CentOS 8.5), el9 (Rocky 9.4)")
    up.add_argument("--podman", action="store_true",
                    help="el8/el9: nodes with podman, buildah, runc and podman-docker installed")
    up.add_argument("--bastion", action="store_true",
                    help="one more node, bastion (127.0.B.10), the only one the nodes accept "
                         "logins from; the inventory goes through it")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop a lab")
    down.add_argument("--name", default="default")
    down.add_argument("--all", action="store_true", help="stop every lab under the lab root")
    down.set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="list labs")
    status.add_argument("--verbose", "-v", action="store_true")
    status.set_defaults(func=cmd_status)
    sub.add_parser("deps", help="check preconditions, install Debian packages").set_defaults(
        func=cmd_deps)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())


"""Command line of the link lab: ``python -m teledrive.shared.linklab COMMAND``.

Commands:
    up        create a lab and keep it until Ctrl-C / SIGTERM (prints names and addresses)
    list      list labs (namespaces) with a prefix
    cut       cut a running lab's link for N seconds
    profile   switch a running lab's profile
    stats     print a running lab's counters as JSON
    cleanup   remove leftover labs of dead processes (``--all``: every lab with the prefix)
    relay     (internal) the frame relay, run inside the router namespace
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence

from teledrive.shared.errors import TeledriveError
from teledrive.shared.linklab.netns import (
    ADDRESSES,
    DEFAULT_PREFIX,
    RELAY_OPS_IF,
    RELAY_VEHICLE_IF,
    LabNames,
    LinkLab,
    cleanup,
    destroy_lab,
    list_namespaces,
)
from teledrive.shared.linklab.profiles import PROFILES, LinkProfile, resolve_profile
from teledrive.shared.linklab.relay import Relay, control_request


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m teledrive.shared.linklab")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="create a lab and keep it until interrupted")
    up.add_argument("--profile", default="lan", help=f"one of {', '.join(PROFILES)}, outage[:..]")
    up.add_argument("--seed", type=int, default=0)
    up.add_argument("--prefix", default=DEFAULT_PREFIX)

    listing = commands.add_parser("list", help="list labs")
    listing.add_argument("--prefix", default=DEFAULT_PREFIX)

    cut = commands.add_parser("cut", help="cut a lab's link now")
    cut.add_argument("lab_id")
    cut.add_argument("seconds", type=float)

    profile = commands.add_parser("profile", help="switch a lab's profile")
    profile.add_argument("lab_id")
    profile.add_argument("name")

    stats = commands.add_parser("stats", help="print a lab's counters")
    stats.add_argument("lab_id")

    clean = commands.add_parser("cleanup", help="remove leftover labs")
    clean.add_argument("--prefix", default=DEFAULT_PREFIX)
    clean.add_argument("--all", action="store_true", help="also labs of running processes")

    relay = commands.add_parser("relay", help="(internal) run the frame relay")
    relay.add_argument("--vehicle-if", default=RELAY_VEHICLE_IF)
    relay.add_argument("--ops-if", default=RELAY_OPS_IF)
    relay.add_argument("--profile", default="lan")
    relay.add_argument("--profile-json", default=None)
    relay.add_argument("--seed", type=int, default=0)
    relay.add_argument("--control", default=None, help="Unix socket path for control requests")
    relay.add_argument("--lifeline-stdin", action="store_true", help="stop when stdin closes")
    relay.add_argument("--reap", default=None, help="lab id to delete if the starter dies")
    relay.add_argument("--no-realtime", action="store_true", help="do not ask for SCHED_FIFO")
    return parser


def _control_path(lab_id: str) -> str:
    prefix = lab_id.split("-", 1)[0]
    return LabNames(prefix=prefix, lab_id=lab_id).control_path


def _run_relay(args: argparse.Namespace) -> int:
    profile: LinkProfile = (
        LinkProfile.from_json(args.profile_json)
        if args.profile_json is not None
        else resolve_profile(args.profile)
    )
    relay = Relay(
        vehicle_if=args.vehicle_if,
        ops_if=args.ops_if,
        profile=profile,
        seed=args.seed,
        control_path=args.control,
        lifeline_fd=sys.stdin.fileno() if args.lifeline_stdin else None,
        realtime=not args.no_realtime,
    )
    print("ready", flush=True)
    relay.run()
    if relay.orphaned and args.reap:
        destroy_lab(args.reap, spare_pid=os.getpid())
    return 0


def _run_up(args: argparse.Namespace) -> int:
    with LinkLab(args.profile, seed=args.seed, prefix=args.prefix) as lab:
        info = {
            "lab_id": lab.names.lab_id,
            "profile": lab.profile.name,
            "namespaces": {role: lab.namespace(role) for role in (*ADDRESSES, "router")},
            "addresses": ADDRESSES,
            "control": lab.names.control_path,
        }
        print(json.dumps(info, indent=2), flush=True)
        print("lab is up; Ctrl-C to remove it", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the link lab command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "relay":
            return _run_relay(args)
        if args.command == "up":
            return _run_up(args)
        if args.command == "list":
            for namespace in list_namespaces():
                if namespace.startswith(f"{args.prefix}-"):
                    print(namespace)
            return 0
        if args.command == "cleanup":
            for namespace in cleanup(args.prefix, include_live=args.all):
                print(f"deleted {namespace}")
            return 0
        if args.command == "cut":
            control_request(_control_path(args.lab_id), {"op": "cut", "seconds": args.seconds})
            return 0
        if args.command == "profile":
            request = {"op": "profile", "name": args.name}
            print(control_request(_control_path(args.lab_id), request)["profile"])
            return 0
        if args.command == "stats":
            print(json.dumps(control_request(_control_path(args.lab_id), {"op": "stats"})))
            return 0
    except TeledriveError as err:
        print(f"linklab: {err}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``teledrive`` command: one entry point, a subcommand per process.

    teledrive hub --listen 127.0.0.1:8765
    teledrive vehicle --config vehicle.toml
    teledrive operator --hub ws://127.0.0.1:8765 --vehicle van-01 --headless
    teledrive demo --headless --seconds 15

Subcommands import their side lazily, so ``teledrive hub`` never loads video code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from teledrive.shared.errors import TeledriveError
from teledrive.shared.log_levels import apply_log_levels


def _add_hub(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("hub", help="run the operations hub (signaling, presence)")
    # Checked by the hub's own parser when it starts (a ConfigError ends the command with 2).
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="where to listen (default: 127.0.0.1:8765); [::1]:PORT for IPv6, port 0 picks one",
    )


def _add_vehicle(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("vehicle", help="run the vehicle service")
    p.add_argument("--config", required=True, help="vehicle.toml")
    p.add_argument("--hub", help="override [vehicle] hub_url")


def _add_operator(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("operator", help="run an operator (headless for now)")
    p.add_argument("--hub", required=True, help="hub URL, ws://HOST:PORT")
    p.add_argument("--vehicle", required=True, help="vehicle id")
    p.add_argument("--id", default="operator", help="this operator's id")
    p.add_argument("--headless", action="store_true", help="no window: print statistics")
    p.add_argument("--seconds", type=float, help="stop after N seconds")
    p.add_argument("--stdin", action="store_true", help="drive from 'SPEED STEER' lines on stdin")
    p.add_argument("--json", action="store_true", help="print the statistics as one JSON line")


def _add_console(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "console",
        help="the operator's desktop console (teledrive console --help for its options)",
        add_help=False,
    )
    p.add_argument("console_args", nargs=argparse.REMAINDER)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="hub + simulated vehicle + operator on this machine")
    p.add_argument("--headless", action="store_true", help="headless operator, JSON summary")
    p.add_argument("--seconds", type=float, help="stop after N seconds (default: run until ^C)")
    p.add_argument("--mcu", choices=["sim", "simavr"], default="sim", help="motor controller")
    p.add_argument(
        "--screenshot", metavar="PATH", help="run the console offscreen, save a PNG of it, exit"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``teledrive`` command."""
    parser = argparse.ArgumentParser(prog="teledrive", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_hub(sub)
    _add_vehicle(sub)
    _add_operator(sub)
    _add_console(sub)
    _add_demo(sub)
    return parser


async def _run_until_signal(main: asyncio.Task[object]) -> None:
    """Awaits ``main``; SIGINT or SIGTERM cancels it (a clean shutdown)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await main


async def _hub(args: argparse.Namespace) -> int:
    from teledrive.operator.hub import DEFAULT_LISTEN, run_hub

    def announce(url: str) -> None:
        # One line that scripts parse (operator/demo.py, the e2e tests): keep its format.
        print(f"hub listening on {url}", flush=True)

    listen = DEFAULT_LISTEN if args.listen is None else args.listen
    await run_hub(listen, on_listening=announce)  # until SIGINT or SIGTERM
    return 0


async def _vehicle(args: argparse.Namespace) -> int:
    import msgspec

    from teledrive.shared.config import load_vehicle_config
    from teledrive.vehicle.service import VehicleService

    config = load_vehicle_config(args.config)
    if args.hub:
        config = msgspec.structs.replace(
            config, vehicle=msgspec.structs.replace(config.vehicle, hub_url=args.hub)
        )
    service = VehicleService(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    print(f"vehicle {config.vehicle.id} dialing {config.vehicle.hub_url}", flush=True)
    await service.run()
    return 1 if service.failed else 0


async def _operator(args: argparse.Namespace) -> int:
    from teledrive.operator.client import OperatorClient
    from teledrive.operator.patterns import CommandSource, ScriptedPattern, StdinPattern

    if not args.headless:
        print("teledrive operator: only --headless exists so far", file=sys.stderr)
        return 2
    source: CommandSource = StdinPattern() if args.stdin else ScriptedPattern()
    client = OperatorClient(args.hub, args.vehicle, operator_id=args.id, source=source)
    run: asyncio.Task[object] = asyncio.create_task(client.run(args.seconds))
    await _run_until_signal(run)
    if not run.done() or run.cancelled():
        await client.close()
    summary = client.stats.summary()
    print(json.dumps(summary) if args.json else summary, flush=True)
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from teledrive.operator.demo import run_demo

    return await run_demo(
        headless=args.headless, duration_s=args.seconds, mcu=args.mcu, screenshot=args.screenshot
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``teledrive`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["console"]:
        # The console parses its own options (argparse cannot pass "--x" through REMAINDER).
        from teledrive.operator.console.app import main_console

        logging.basicConfig(level=logging.WARNING)
        try:
            apply_log_levels()
        except TeledriveError as err:
            print(f"teledrive console: {err}", file=sys.stderr)
            return 2
        return main_console(argv[1:])
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format=f"%(asctime)s {args.command}[{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    try:
        apply_log_levels()
    except TeledriveError as err:
        print(f"teledrive {args.command}: {err}", file=sys.stderr)
        return 2
    commands = {"hub": _hub, "vehicle": _vehicle, "operator": _operator, "demo": _demo}
    try:
        return asyncio.run(commands[args.command](args))
    except TeledriveError as err:
        print(f"teledrive {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``qrclient demo``: the built-in demo PACS, with the UI connected to it or alone (--serve)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from qrclient.cli import exit_codes
from qrclient.cli.common import fail
from qrclient.demo.server import DemoPacs, Destination
from qrclient.net.peer import DEFAULT_LISTEN_PORT, NodeError, check_ae_title, check_port, parse_node

LOOPBACK = "127.0.0.1"
SERVE_PORT = 11112
# qrclient's own defaults (--aet, --listen), so `qrclient move` against the demo just works.
OUR_DESTINATION = Destination("QRCLIENT", LOOPBACK, DEFAULT_LISTEN_PORT)


def run(args: argparse.Namespace) -> int:
    try:
        pacs = _pacs(args)
    except NodeError as exc:
        fail(str(exc))
        return exit_codes.USAGE
    if not args.serve and not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail("'qrclient demo' opens the terminal UI: run it in a terminal, or use --serve")
        return exit_codes.USAGE
    # pynetdicom logs to the root logger's last resort; its failures reach us as statuses.
    pynetdicom_logger = logging.getLogger("pynetdicom")
    pynetdicom_logger.addHandler(logging.NullHandler())
    pynetdicom_logger.propagate = False
    try:
        pacs.start()
    except OSError as exc:
        fail(f"the demo PACS cannot listen on {LOOPBACK}:{pacs.port}: {exc.strerror or exc}")
        sys.stderr.write("qrclient: hint: choose another port with --port N\n")
        return exit_codes.NETWORK
    try:
        return _serve(pacs, quiet=args.quiet) if args.serve else _open_ui(pacs, args.out)
    finally:
        pacs.stop()


def _pacs(args: argparse.Namespace) -> DemoPacs:
    """The demo PACS the options describe (not started); NodeError on bad input."""
    ae_title = check_ae_title(args.aet, "demo AE title (--aet)")
    if args.port is None:
        port = SERVE_PORT if args.serve else 0  # the UI connects in-process: any port does
    else:
        port = check_port(str(args.port), "--port")
    destinations = {OUR_DESTINATION.ae_title: OUR_DESTINATION}
    for text in args.destinations:
        try:
            peer = parse_node(text)
        except NodeError as exc:
            raise NodeError(f"--destination: {exc}") from None
        destinations[peer.ae_title] = Destination(peer.ae_title, peer.host, peer.port)
    log = _log if args.serve and not args.quiet else None
    return DemoPacs(ae_title, LOOPBACK, port, list(destinations.values()), log=log)


def _log(line: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {line}\n")
    sys.stderr.flush()


def _serve(pacs: DemoPacs, *, quiet: bool = False) -> int:
    studies = sum(len(p.studies) for p in pacs.archive)
    if not quiet:
        print(
            f"demo PACS {pacs.node} ready ({len(pacs.archive)} patients, {studies} studies, "
            f"{len(pacs.instances)} images; Ctrl-C stops it); "
            f"try: qrclient find {pacs.node} --level study",
            flush=True,
        )
    signal.signal(signal.SIGTERM, _interrupt)  # `kill`, `docker stop`: stop as on Ctrl-C
    try:
        while True:
            time.sleep(3600)  # the server runs in pynetdicom's threads
    except KeyboardInterrupt:
        if not quiet:
            sys.stderr.write("qrclient: demo PACS stopped\n")
    return exit_codes.OK


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _open_ui(pacs: DemoPacs, out: str | None) -> int:
    import qrclient.tui
    from qrclient.config import ConfigError
    from qrclient.store.location import default_store
    from qrclient.tui.nodes import NodeBook

    run_ui = getattr(qrclient.tui, "run", None)
    if run_ui is None:
        fail("the terminal UI is not part of this build: use 'qrclient demo --serve' instead")
        return exit_codes.USAGE
    store = Path(out) if out else default_store().parent / "demo-store"
    listen = (OUR_DESTINATION.host, OUR_DESTINATION.port)
    try:
        # Our AE title is the destination the demo knows, whatever the config file says;
        # a file $QRCLIENT_CONFIG names but 'nodes add' has not created yet is no error.
        nodes = NodeBook.load(calling_ae=OUR_DESTINATION.ae_title, listen=listen, missing_ok=True)
    except ConfigError as exc:
        fail(str(exc))
        return exit_codes.USAGE
    return int(run_ui(pacs.node, store=store, nodes=nodes))

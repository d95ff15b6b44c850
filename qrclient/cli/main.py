"""Command-line entry point: parses arguments, runs one command, maps failures to exit codes.

Only argparse is imported here; each command's module (and with it pydicom, pynetdicom
and anyio) is imported when that command runs, so ``qrclient --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from qrclient import __version__
from qrclient.cli import exit_codes

_EPILOG = """\
exit codes: 0 success; 2 bad usage or input; 3 could not connect, association rejected
or aborted, a timeout, or cannot listen; 4 the peer answered with a failure status, or
has nothing matching a retrieve; 5 partial results
(the peer truncated them, or a retrieve got only part); 130 interrupted.
NODE is AET@host:port, e.g. ORTHANC@127.0.0.1:4242."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (argparse prints the whole usage block by default)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(exit_codes.USAGE)


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", metavar="NODE", help="the peer as AET@host:port")
    group = parser.add_argument_group("association")
    group.add_argument("--aet", default="QRCLIENT", help="our calling AE title (default QRCLIENT)")
    group.add_argument(
        "--max-pdu",
        type=int,
        default=1 << 20,
        metavar="BYTES",
        help="largest PDU we accept (default 1048576)",
    )
    for name, default, what in (
        ("connect", 10.0, "TCP connection"),
        ("association", 30.0, "the peer's answer to our association request"),
        ("dimse", 60.0, "each DIMSE response"),
        ("network", 30.0, "the rest of a PDU, and release"),
    ):
        group.add_argument(
            f"--{name}-timeout",
            type=float,
            default=default,
            metavar="SECONDS",
            help=f"wait at most this long for {what} (default {default:g})",
        )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log negotiation and DIMSE messages to stderr"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="qrclient",
        description="Asynchronous DICOM query/retrieve client.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qrclient {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    echo = commands.add_parser(
        "echo",
        help="C-ECHO a peer: reachability and round-trip time",
        description="Open an association, send C-ECHO COUNT times, report round-trip times.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection_options(echo)
    echo.add_argument("-c", "--count", type=int, default=1, help="how many echoes (default 1)")
    echo.add_argument("--format", choices=("text", "json"), default="text", help="output format")

    find = commands.add_parser(
        "find",
        help="C-FIND: query a peer at patient, study, series or image level",
        description=(
            "Query a peer. Keys are -k KEYWORD=VALUE to match (wildcards * ? on text, "
            "ranges a-b on dates and times, \\-separated lists) or -k KEYWORD to have it "
            "returned. Tags work too: -k 0010,0020=123. Each level has default return keys."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection_options(find)
    find.add_argument(
        "-l",
        "--level",
        required=True,
        metavar="LEVEL",
        help="patient, study, series or image",
    )
    find.add_argument(
        "-m", "--model", default="study", metavar="MODEL", help="patient or study root (default)"
    )
    find.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        dest="keys",
        metavar="KEY[=VALUE]",
        help="a matching or return key; repeat for more",
    )
    find.add_argument(
        "--no-default-keys",
        action="store_true",
        help="return only the keys given with -k, not the level's defaults",
    )
    find.add_argument(
        "-f",
        "--format",
        choices=("table", "json", "ndjson", "csv"),
        default=None,
        help="output format (default: table on a terminal, ndjson otherwise)",
    )
    find.add_argument(
        "--relational", action="store_true", help="propose relational queries (extended neg.)"
    )
    find.add_argument(
        "--fuzzy", action="store_true", help="propose fuzzy semantic matching of person names"
    )
    find.add_argument(
        "--datetime-matching", action="store_true", help="propose combined date-time matching"
    )
    find.add_argument(
        "-q", "--quiet", action="store_true", help="no summary line or warnings on stderr"
    )
    for name, summary in (
        ("get", "C-GET: retrieve into the local store over our own association"),
        ("move", "C-MOVE: have the peer send to us (our storage listener) or to --dest"),
        ("retrieve", "C-GET where the peer accepts it, else C-MOVE to us"),
    ):
        _add_retrieve_parser(commands, name, summary)
    return parser


def _add_retrieve_parser(
    commands: argparse._SubParsersAction[_Parser], name: str, summary: str
) -> None:
    sub = commands.add_parser(
        name,
        help=summary,
        description=(
            f"{summary}. Select what to fetch with exact unique keys: -k StudyInstanceUID=... "
            "(lists with \\), -k SeriesInstanceUID=..., -k SOPInstanceUID=..., "
            "-k PatientID=... . Instances already in the store are not fetched again, so "
            "running the same command again resumes an interrupted retrieve."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection_options(sub)
    sub.add_argument(
        "-l",
        "--level",
        default="study",
        metavar="LEVEL",
        help="patient, study (default), series or image",
    )
    sub.add_argument(
        "-m", "--model", default="study", metavar="MODEL", help="patient or study root (default)"
    )
    sub.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        dest="keys",
        metavar="KEY=VALUE",
        help="an exact unique key; repeat for more",
    )
    sub.add_argument(
        "-o",
        "--out",
        metavar="DIR",
        help="the local store (default: qrclient's store in your user data directory)",
    )
    sub.add_argument(
        "-p",
        "--parallel",
        type=int,
        default=2,
        metavar="N",
        help="concurrent associations to the peer (default 2)",
    )
    sub.add_argument("--format", choices=("text", "json"), default="text", help="summary format")
    if name != "get":
        sub.add_argument(
            "--dest",
            metavar="AET",
            help="C-MOVE destination AE title (default: ours, to our storage listener)",
        )
        sub.add_argument(
            "--listen",
            default="11113",
            metavar="[HOST:]PORT",
            help="where our storage listener accepts the moved instances (default 11113)",
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return exit_codes.USAGE
    name = "retrieve" if args.command in ("get", "move") else args.command
    try:
        # Inside the try: importing pydicom and pynetdicom takes ~0.15 s, and Ctrl-C
        # then must end as cleanly as Ctrl-C during the query.
        module = importlib.import_module(f"qrclient.cli.{name}_command")
        return int(module.run(args))
    except KeyboardInterrupt:
        sys.stderr.write("qrclient: interrupted\n")
        return exit_codes.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as a filter should.
        _silence_stdout()
        return exit_codes.OK


def _silence_stdout() -> None:
    """Point stdout at devnull so the interpreter's final flush cannot fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

"""Command-line entry point: parses arguments, runs one command, maps failures to exit codes.

Only argparse is imported here; each command's module (and with it pydicom and anyio)
is imported when that command runs, so ``qrclient --help`` stays fast.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn, TextIO

from qrclient import __version__
from qrclient.cli import exit_codes
from qrclient.present.failures import main_error

if TYPE_CHECKING:
    from qrclient.present.trace import Trace

_EPILOG = """\
exit codes: 0 success; 2 bad usage or input; 3 could not connect, association rejected
or aborted, a timeout, or cannot listen; 4 the peer answered with a failure status, or
has nothing matching a retrieve, or refused all a send offered; 5 partial results (the
peer truncated them, a retrieve got only part, a send sent only some files); 6 the
local store cannot be written (disk full, read-only, permission); 7 the store's index
is damaged, or store verify found problems (qrclient store rebuild); 8 the store is in
use by another qrclient (--wait SECONDS); 130 interrupted; 1 a bug in qrclient.
NODE is AET@host:port, e.g. ORTHANC@127.0.0.1:4242, or a node name from the configuration
file (--config FILE, else $QRCLIENT_CONFIG, else config.toml in qrclient's user
configuration folder; see 'qrclient nodes'). Options given override the node's settings,
which override the file's, which override the defaults shown."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (argparse prints the whole usage block by default)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(exit_codes.USAGE)


if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[_Parser]  # generic for type checkers only


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the configuration file (default: $QRCLIENT_CONFIG, else qrclient's config.toml)",
    )


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    # Defaults are None: a value not given comes from the node or the configuration file.
    parser.add_argument(
        "node", metavar="NODE", help="a configured node name, or the peer as AET@host:port"
    )
    _add_config_option(parser)
    group = parser.add_argument_group("association")
    group.add_argument(
        "--aet",
        help="our calling AE title (default: the node's calling_ae, else the file's "
        "ae_title, else QRCLIENT)",
    )
    group.add_argument(
        "--max-pdu",
        type=int,
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
            metavar="SECONDS",
            help=f"wait at most this long for {what} (default {default:g})",
        )
    _add_tls_options(parser)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log negotiation and DIMSE messages to stderr"
    )
    _add_quiet_option(parser)
    parser.add_argument(
        "--trace",
        metavar="FILE",
        help="write the association and DIMSE traffic to FILE as JSON Lines (no data sets), "
        "for a bug report",
    )


def _add_quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="only what was asked for (results, JSON) and errors: no summary, progress, "
        "notes or warnings; the exit code tells the outcome",
    )


def _add_tls_options(parser: argparse.ArgumentParser) -> None:
    # Any of them turns TLS on; each replaces the node's own TLS setting.
    group = parser.add_argument_group("DICOM over TLS (any --tls-* option implies --tls)")
    group.add_argument(
        "--tls", action="store_true", default=None, help="DICOM over TLS (1.2 or newer)"
    )
    group.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="PEM CA certificates to trust for the peer (default: the system's)",
    )
    group.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="our PEM certificate: client certificate, and our storage listener's",
    )
    group.add_argument(
        "--tls-key", metavar="FILE", help="its PEM private key (default: in --tls-cert's file)"
    )
    group.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="the name the peer's certificate must carry (default: the host of NODE)",
    )
    group.add_argument(
        "--tls-no-verify",
        action="store_true",
        default=None,
        help="INSECURE: do not check the peer's certificate (anyone on the path can "
        "impersonate it); only to diagnose",
    )


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, with the options of ``only`` (None: of all).

    Every command is listed (for --help and for errors), but adding the options of
    all of them took some 10 ms, so a run adds only those of the command it runs.
    """
    parser = _Parser(
        prog="qrclient",
        description="Asynchronous DICOM query/retrieve client.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qrclient {__version__}")
    parser.add_argument(
        "--config",
        dest="global_config",
        metavar="FILE",
        help="the configuration file with named nodes (also accepted after the command; "
        "default: $QRCLIENT_CONFIG, else config.toml in qrclient's user configuration folder)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    for name, add in _COMMANDS.items():
        add(commands, name, only is None or only == name)
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The command ``argv`` names (its first word, --config's value aside), else ""."""
    skip_value = False
    for token in argv:
        if skip_value:
            skip_value = False
        elif token == "--config":
            skip_value = True
        elif not token.startswith("-"):
            return token
    return ""


def _add_echo_parser(commands: _Commands, name: str, options: bool) -> None:
    echo = commands.add_parser(
        name,
        help="C-ECHO a peer: reachability and round-trip time",
        description="Open an association, send C-ECHO COUNT times, report round-trip times.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if not options:
        return
    _add_connection_options(echo)
    echo.add_argument("-c", "--count", type=int, default=1, help="how many echoes (default 1)")
    echo.add_argument("--format", choices=("text", "json"), default="text", help="output format")


def _add_find_parser(commands: _Commands, name: str, options: bool) -> None:
    find = commands.add_parser(
        name,
        help="C-FIND: query a peer at patient, study, series or image level",
        description=(
            "Query a peer. Keys are -k KEYWORD=VALUE to match (wildcards * ? on text, "
            "ranges a-b on dates and times, \\-separated lists) or -k KEYWORD to have it "
            "returned. Tags work too: -k 0010,0020=123. Each level has default return keys."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if not options:
        return
    _add_connection_options(find)
    find.add_argument(
        "-l",
        "--level",
        required=True,
        metavar="LEVEL",
        help="patient, study, series or image",
    )
    find.add_argument("-m", "--model", metavar="MODEL", help="patient or study root (default)")
    _add_key_options(find)
    find.add_argument(
        "--relational", action="store_true", help="propose relational queries (extended neg.)"
    )
    find.add_argument(
        "--fuzzy", action="store_true", help="propose fuzzy semantic matching of person names"
    )
    find.add_argument(
        "--datetime-matching", action="store_true", help="propose combined date-time matching"
    )


def _add_worklist_parser(commands: _Commands, name: str, options: bool) -> None:
    worklist = commands.add_parser(
        name,
        help="Modality Worklist C-FIND: the procedures scheduled, by date, modality, station",
        description=(
            "Ask a worklist SCP (RIS, PACS broker) what is scheduled. --date, --modality and "
            "--station match in the Scheduled Procedure Step; -k takes any other key, "
            "nested ones as SEQUENCE.KEY, e.g. -k ScheduledProcedureStepSequence."
            "ScheduledStationName=CT1 or -k 'PatientName=DOE*'."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if not options:
        return
    _add_connection_options(worklist)
    worklist.add_argument(
        "--date",
        metavar="DATE",
        help="scheduled start date or range: today, 2024-03-14, 20240314, 2024-03, "
        "2024-03-01-2024-03-31",
    )
    worklist.add_argument("--modality", metavar="MODALITY", help="e.g. CT, MR, US")
    worklist.add_argument(
        "--station", metavar="AET", help="the scheduled station's AE title (a modality's own)"
    )
    _add_key_options(worklist)


def _add_key_options(parser: argparse.ArgumentParser) -> None:
    """-k, --no-default-keys and -f, as find has them."""
    parser.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        dest="keys",
        metavar="KEY[=VALUE]",
        help="a matching or return key; repeat for more",
    )
    parser.add_argument(
        "--no-default-keys",
        action="store_true",
        help="return only the keys given with -k, not the defaults",
    )
    parser.add_argument(
        "-f",
        "--format",
        choices=("table", "json", "ndjson", "csv"),
        default=None,
        help="output format (default: table on a terminal, ndjson otherwise)",
    )


def _add_doctor_parser(commands: _Commands, name: str, options: bool) -> None:
    doctor = commands.add_parser(
        name,
        help="check a PACS end to end and say what to fix (for PACS administrators)",
        description=(
            "Check NODE in order: name resolution, TCP, association, C-ECHO, the Q/R "
            "contexts and transfer syntaxes it accepts, C-FIND, C-GET of one instance as "
            "'qrclient get' does it, C-MOVE of one instance to our listener (both kept in "
            "temporary directories), result caps, repeated matches and relational "
            "queries. Exit 0: no check failed; 3: the PACS cannot be reached or refuses "
            "the association; 4: it answers but a check failed."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if not options:
        return
    _add_connection_options(doctor)
    doctor.add_argument(
        "--listen",
        metavar="[HOST:]PORT",
        help="where our storage listener accepts the moved instance (default 11113)",
    )
    doctor.add_argument(
        "--move-wait",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how long to wait for the instance got or moved (default 20)",
    )
    doctor.add_argument("--format", choices=("text", "json"), default="text", help="output")


def _add_tui_parser(commands: _Commands, name: str, options: bool) -> None:
    tui = commands.add_parser(
        name,
        help="the terminal UI: query, browse, retrieve and troubleshoot (also: qrclient alone)",
        description="Open the terminal UI, optionally on NODE (AET@host:port).",
    )
    if not options:
        return
    tui.add_argument(
        "node", metavar="NODE", nargs="?", help="the peer: AET@host:port or a configured name"
    )
    tui.add_argument("--aet", help="our calling AE title (default: configured, else QRCLIENT)")
    tui.add_argument("-o", "--out", metavar="DIR", help="the local store (default: configured)")
    tui.add_argument(
        "--listen",
        metavar="[HOST:]PORT",
        help="where our storage listener accepts C-MOVE instances (default: configured, 11113)",
    )
    tui.add_argument("--config", metavar="FILE", help="the configuration file with named nodes")


def _add_nodes_parser(commands: _Commands, name: str, options: bool) -> None:
    nodes = commands.add_parser(
        name,
        help="named nodes in the configuration file: list, show, add, remove",
        description=(
            "Named nodes, usable wherever a command takes NODE. add and remove edit the "
            "configuration file in place: its comments and other settings are kept."
        ),
    )
    if not options:
        return
    actions = nodes.add_subparsers(
        dest="nodes_command", metavar="ACTION", required=True, parser_class=_Parser
    )
    listing = actions.add_parser("list", help="the configured nodes")
    show = actions.add_parser("show", help="one node's settings, defaults included")
    show.add_argument("name", metavar="NAME", help="a node name (or AET@host:port)")
    for sub in (listing, show):
        _add_config_option(sub)
        sub.add_argument("--format", choices=("text", "json"), default="text", help="output")
        _add_quiet_option(sub)
    add = actions.add_parser(
        "add",
        help="add a node (settings not given are inherited from the file's defaults)",
        description="Add a named node; settings not given follow the file's defaults.",
    )
    add.add_argument("name", metavar="NAME", help="letters, digits, '-' and '_'")
    add.add_argument("address", metavar="AET@HOST:PORT", help="the peer")
    _add_config_option(add)
    add.add_argument("-m", "--model", metavar="MODEL", help="patient or study root")
    add.add_argument("--method", choices=("get", "move", "auto"), help="how to retrieve")
    add.add_argument("--dest", metavar="AET", help="C-MOVE destination AE title")
    add.add_argument(
        "--calling-aet",
        metavar="AET",
        help="our AE title toward this node, as registered on it (default: the file's)",
    )
    add.add_argument("--listen", metavar="[HOST:]PORT", help="our storage listener for C-MOVE")
    add.add_argument("-p", "--parallel", type=int, metavar="N", help="concurrent associations")
    for name in ("connect", "association", "dimse", "network"):
        add.add_argument(f"--{name}-timeout", type=float, metavar="SECONDS")
    _add_tls_options(add)
    add.add_argument("--replace", action="store_true", help="overwrite a node of that name")
    _add_quiet_option(add)
    remove = actions.add_parser("remove", help="remove a node")
    remove.add_argument("name", metavar="NAME")
    _add_config_option(remove)
    _add_quiet_option(remove)


def _add_retrieve_parser(commands: _Commands, name: str, options: bool) -> None:
    summary = _RETRIEVE_SUMMARIES[name]
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
    if not options:
        return
    _add_connection_options(sub)
    sub.add_argument(
        "-l",
        "--level",
        default="study",
        metavar="LEVEL",
        help="patient, study (default), series or image",
    )
    sub.add_argument("-m", "--model", metavar="MODEL", help="patient or study root (default)")
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
        metavar="N",
        help="concurrent associations to the peer (default 2)",
    )
    sub.add_argument(
        "--max-instance",
        metavar="BYTES",
        help="refuse a received instance larger than this, e.g. 500M (default 4G; K, M, G, T "
        "are powers of 1024)",
    )
    sub.add_argument("--format", choices=("text", "json"), default="text", help="summary format")
    _add_wait_option(sub)
    sub.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a stored instance by a different one with its SOP Instance UID from "
        "another AE (default: keep the first and report the conflict)",
    )
    _add_pseudonymize_options(sub)
    _add_cohort_options(sub)
    if name != "get":
        sub.add_argument(
            "--dest",
            metavar="AET",
            help="C-MOVE destination AE title (default: ours, to our storage listener)",
        )
        sub.add_argument(
            "--listen",
            metavar="[HOST:]PORT",
            help="where our storage listener accepts the moved instances (default 11113)",
        )
        sub.add_argument(
            "--move-from",
            action="append",
            metavar="ADDRESS",
            help=(
                "an address, network or host name the PACS may also deliver C-MOVE "
                "instances from (besides its host's); repeat for more"
            ),
        )


def _add_send_parser(commands: _Commands, name: str, options: bool) -> None:
    send = commands.add_parser(
        name,
        help="C-STORE files, folders, or studies of the local store to a peer",
        description=(
            "Send DICOM files to NODE by C-STORE: files, folders (recursively; files that "
            "are not DICOM are skipped), and with --study/--series instances of the local "
            "store. Each file is sent in its own transfer syntax where the peer accepts it, "
            "else converted to an uncompressed one where pydicom can. Exit 0: all sent; "
            "5: some failed; 4: the peer refused all; 3: it could not be reached."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if not options:
        return
    _add_connection_options(send)
    send.add_argument("paths", nargs="*", metavar="PATH", help="a DICOM file or a folder")
    send.add_argument(
        "--study", action="append", default=[], metavar="UID", help="a study of the local store"
    )
    send.add_argument(
        "--series", action="append", default=[], metavar="UID", help="a series of the store"
    )
    send.add_argument(
        "-o",
        "--out",
        metavar="DIR",
        help="the local store of --study and --series (default: configured, else qrclient's)",
    )
    send.add_argument(
        "-p", "--parallel", type=int, metavar="N", help="concurrent associations (default 2)"
    )
    send.add_argument(
        "--report",
        metavar="FILE",
        help="write each file's outcome to FILE as CSV ('-': stdout)",
    )
    send.add_argument("--format", choices=("text", "json"), default="text", help="summary format")


def _add_pseudonymize_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "pseudonymisation on receive (PS3.15 Basic Application Level Confidentiality Profile)"
    )
    group.add_argument(
        "--pseudonymize",
        action="store_true",
        help="de-identify every instance before it is stored: UIDs, patient name and ID "
        "replaced by keyed pseudonyms (the same in every run), identifying attributes "
        "removed; the store then takes no plain instances",
    )
    group.add_argument(
        "--linkage",
        metavar="FILE",
        help="append original identifiers and their pseudonyms to this CSV file (never "
        "inside the store)",
    )
    group.add_argument(
        "--date-shift",
        metavar="DAYS",
        help="move each patient's dates back by 1 to DAYS days, the same for all their "
        "instances (default 365, or as the store was pseudonymised)",
    )
    group.add_argument("--keep-dates", action="store_true", help="keep dates as they are")
    group.add_argument(
        "--pseudonym-key",
        metavar="FILE",
        help="the secret key behind the pseudonyms, created (mode 600) if missing (default: "
        "one per store in qrclient's configuration folder); keep it out of the store",
    )


def _add_cohort_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "a list of studies (a cohort), run as a job that 'qrclient jobs resume' takes up"
    )
    group.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="retrieve each row of FILE (- for stdin): find's ndjson/json/csv output, or a "
        "CSV whose header names AccessionNumber, PatientID, StudyInstanceUID, StudyDate "
        "(a date or range) or ModalitiesInStudy; each row is looked up by a STUDY-level "
        "C-FIND",
    )
    group.add_argument(
        "--report",
        metavar="FILE",
        help="write one CSV row per input row: status (retrieved, partial, not-found, "
        "ambiguous, failed), its studies and counts",
    )
    group.add_argument(
        "--no-split",
        action="store_true",
        help="keep a look-up the PACS cut short at its result cap as it is (default: split "
        "it by StudyDate until each part comes back whole)",
    )
    group.add_argument(
        "--no-verify",
        action="store_true",
        help="do not compare each series' instance count with the PACS's after a study "
        "(default: compare, ask again for what is missing, twice at most)",
    )
    group.add_argument(
        "--max-associations",
        type=int,
        metavar="N",
        help="associations to the PACS at once, in all (default: the node's parallel, 2)",
    )
    group.add_argument(
        "--rate",
        metavar="RATE",
        help="at most this many studies per time (30/min, 100/h) or bytes per second "
        "(5MB/s, averaged over studies)",
    )
    group.add_argument(
        "--window",
        metavar="HH:MM-HH:MM",
        help="run only in this local time window (e.g. 20:00-06:00); outside it the job "
        "waits and goes on by itself",
    )


def _add_wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to this long for another qrclient using the store (default: fail at once)",
    )


def _add_store_parser(commands: _Commands, name: str, options: bool) -> None:
    store = commands.add_parser(
        name,
        help="the local store: list what it holds, verify it, rebuild its index",
        description=(
            "The local store (--out DIR, default: the configured store, else qrclient's "
            "in your user data directory). ls lists its patients, studies and series from "
            "the index; verify checks the index against the files (reading every file) "
            "and prints one line per problem (exit 7 if any); rebuild indexes the files "
            "anew, also when the index is damaged."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if not options:
        return
    actions = store.add_subparsers(
        dest="store_command", metavar="ACTION", required=True, parser_class=_Parser
    )
    for action, summary in (
        ("ls", "patients, studies and series held, with counts and sizes"),
        ("verify", "the index against the files: missing, changed, unreadable, unindexed"),
        ("rebuild", "index the files anew (the index is replaced)"),
    ):
        sub = actions.add_parser(action, help=summary, description=f"{summary}.")
        sub.add_argument(
            "-o", "--out", metavar="DIR", help="the store (default: configured, else qrclient's)"
        )
        _add_config_option(sub)
        sub.add_argument("--format", choices=("text", "json"), default="text", help="output")
        _add_quiet_option(sub)
        if action == "ls":
            sub.set_defaults(wait=None)  # reads without the lock
        else:
            _add_wait_option(sub)
    summary = "what the PACS has that the store lacks, series by series"
    missing = actions.add_parser(
        "missing",
        help=summary,
        description=f"{summary}: for the studies of -k keys (StudyInstanceUID, PatientID, "
        "AccessionNumber) or of the rows of --from FILE, each series' instance count on the "
        "PACS against the store's (its files). Exit 0 if nothing is missing, 5 if some is.",
    )
    _add_connection_options(missing)
    missing.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        dest="keys",
        metavar="KEY=VALUE",
        help="StudyInstanceUID, PatientID or AccessionNumber; repeat for more",
    )
    missing.add_argument(
        "--from", dest="from_file", metavar="FILE", help="a list, as retrieve --from takes"
    )
    missing.add_argument(
        "-o", "--out", metavar="DIR", help="the store (default: configured, else qrclient's)"
    )
    missing.add_argument("--format", choices=("text", "json"), default="text", help="output")
    _add_wait_option(missing)


def _add_jobs_parser(commands: _Commands, name: str, options: bool) -> None:
    jobs = commands.add_parser(
        name,
        help="the store's cohort jobs: list them, resume one, cancel one",
        description=(
            "Jobs started by retrieve/get/move --from live in the store's index with "
            "each row's status. list shows them (also while one runs); resume takes one "
            "up where it stopped (Ctrl-C, a crash, a reboot) with the options it was "
            "started with; cancel forgets one (its instances stay)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if not options:
        return
    actions = jobs.add_subparsers(
        dest="jobs_command", metavar="ACTION", required=True, parser_class=_Parser
    )
    for action, summary in (
        ("list", "the jobs, their state and their rows' statuses"),
        ("resume", "take a job up where it stopped (default: the one not finished)"),
        ("cancel", "forget a job (the instances it retrieved stay in the store)"),
    ):
        sub = actions.add_parser(action, help=summary, description=f"{summary}.")
        if action != "list":
            sub.add_argument(
                "id", metavar="ID", type=int, nargs="?" if action == "resume" else None
            )
        sub.add_argument(
            "-o", "--out", metavar="DIR", help="the store (default: configured, else qrclient's)"
        )
        _add_config_option(sub)
        _add_quiet_option(sub)
        if action == "list":
            sub.add_argument("--format", choices=("text", "json"), default="text", help="output")
        else:
            _add_wait_option(sub)
        if action == "resume":
            sub.add_argument(
                "--format", choices=("text", "json"), default="text", help="summary format"
            )
            sub.add_argument(
                "-v", "--verbose", action="store_true", help="log DIMSE messages to stderr"
            )
            sub.add_argument(
                "--max-associations", type=int, metavar="N", help="instead of the job's own"
            )
            sub.add_argument("--rate", metavar="RATE", help="instead of the job's own")
            sub.add_argument("--window", metavar="HH:MM-HH:MM", help="instead of the job's own")


def _add_demo_parser(commands: _Commands, name: str, options: bool) -> None:
    demo = commands.add_parser(
        name,
        help="a built-in demo PACS with a sample archive, and the UI connected to it",
        description=(
            "Start a demo PACS on loopback (C-ECHO, C-FIND, C-GET, C-MOVE over a generated "
            "sample archive) and open the UI on it; with --serve, only serve it until Ctrl-C. "
            "It knows QRCLIENT@127.0.0.1:11113 (qrclient's defaults) as a C-MOVE destination."
        ),
    )
    if not options:
        return
    demo.add_argument("--serve", action="store_true", help="only run the demo PACS, no UI")
    demo.add_argument(
        "--port", type=int, metavar="N", help="its DICOM port (default 11112; UI: any free one)"
    )
    demo.add_argument("--aet", default="DEMO", help="its AE title (default DEMO)")
    demo.add_argument(
        "--destination",
        action="append",
        default=[],
        dest="destinations",
        metavar="AET@HOST:PORT",
        help="a C-MOVE destination it knows; repeat for more",
    )
    demo.add_argument(
        "-o", "--out", metavar="DIR", help="the UI's store (default: demo-store in qrclient's)"
    )
    _add_quiet_option(demo)


_RETRIEVE_SUMMARIES = {
    "get": "C-GET: retrieve into the local store over our own association",
    "move": "C-MOVE: have the peer send to us (our storage listener) or to --dest",
    "retrieve": "C-GET where the peer accepts it, else C-MOVE to us",
}
# Each command's parser is added by (subparsers, its name, whether to add its options).
_COMMANDS: dict[str, Callable[[_Commands, str, bool], None]] = {
    "echo": _add_echo_parser,
    "find": _add_find_parser,
    **dict.fromkeys(_RETRIEVE_SUMMARIES, _add_retrieve_parser),
    "worklist": _add_worklist_parser,
    "send": _add_send_parser,
    "doctor": _add_doctor_parser,
    "nodes": _add_nodes_parser,
    "store": _add_store_parser,
    "jobs": _add_jobs_parser,
    "tui": _add_tui_parser,
    "demo": _add_demo_parser,
}


def _import_quietly(name: str) -> ModuleType:
    """Import a command's module without the cyclic garbage collector.

    The imports create some 100,000 long-lived objects and no garbage; collecting
    while they load, and walking them again in every later full collection, cost
    about 5% of a short command's run. Frozen, they are left out of collections.
    """
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        gc.freeze()
        gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_in(given))
    args, extra = parser.parse_known_args(given)
    if extra and isinstance(getattr(args, "paths", None), list):
        # send's PATHs after its options: argparse takes positionals in one run only.
        if any(item.startswith("-") for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.paths += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None and sys.stdin.isatty() and sys.stdout.isatty():
        # `qrclient` alone on a terminal (perhaps with --config): the UI.
        args = build_parser("tui").parse_args([*given, "tui"])
    if getattr(args, "config", None) is None:  # --config before the command
        args.config = args.global_config
    if args.command is None:
        parser.print_help(sys.stderr)
        return exit_codes.USAGE
    warnings.showwarning = _show_warning
    name = "retrieve" if args.command in ("get", "move") else args.command
    code = exit_codes.INTERNAL_ERROR  # what the trace records if an unexpected exception escapes
    trace = None
    try:
        # Inside the try: importing a command takes ~0.15 s (pydicom ~0.07 s of it), and Ctrl-C
        # then must end as cleanly as Ctrl-C during the query.
        try:
            trace = _open_trace(args, given)
        except OSError as exc:  # the trace file cannot be written
            sys.stderr.write(f"qrclient: error: {exc}\n")
            return exit_codes.USAGE
        module = _import_quietly(f"qrclient.cli.{name}_command")
        try:
            code = int(module.run(args))
        except BaseExceptionGroup as group:
            raise main_error(group) from None
    except KeyboardInterrupt:
        sys.stderr.write("qrclient: interrupted\n")
        code = exit_codes.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as a filter should.
        _silence_stdout()
        code = exit_codes.OK
    except Exception as exc:  # a bug: one line naming it, never a traceback
        _report_unexpected(exc, args)
    finally:
        if trace is not None:
            trace.close(code)
            if trace.failure:
                sys.stderr.write(
                    f"qrclient: warning: --trace {args.trace}: writing stopped "
                    f"({trace.failure}): the trace is incomplete\n"
                )
    return code


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A library's warning (pydicom's, about an odd value a peer sent) as one line, its
    text printable: it may quote the value."""
    from qrclient.present.printable import printable

    sys.stderr.write(f"qrclient: warning: {printable(message)}\n")


def _report_unexpected(error: Exception, args: argparse.Namespace) -> None:
    from qrclient.present.failures import describe
    from qrclient.present.printable import printable

    message, hint = describe(error)
    verbose = getattr(args, "verbose", None)  # None: the command has no -v
    sys.stderr.write(f"qrclient: error: {printable(message)}\n")
    if hint:
        more = " (-v shows where it happened)" if verbose is False else ""
        sys.stderr.write(f"qrclient: hint: {printable(hint)}{more}\n")
    if verbose:
        import traceback

        traceback.print_exception(error, file=sys.stderr)


def _open_trace(args: argparse.Namespace, given: Sequence[str]) -> Trace | None:
    """--trace FILE: the observer that common.node_and_settings adds to the settings."""
    path = getattr(args, "trace", None)
    if path is None:
        return None
    from qrclient.present.trace import Trace, redact_keys

    # Query values may name patients: the trace keeps only their keywords.
    trace = Trace.open(path, str(args.command), redact_keys(given, getattr(args, "keys", [])))
    args.trace_writer = trace
    return trace


def _silence_stdout() -> None:
    """Point stdout at devnull so the interpreter's final flush cannot fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

"""The configuration file: parsing, errors naming file/line/field, precedence, text edits.

No network here: the commands run by node name against the real Orthanc are in
tests/test_cli_nodes.py.
"""

from __future__ import annotations

import os
import textwrap
import tomllib
from pathlib import Path

import pytest

from qrclient.cli.common import UsageError, node_and_settings
from qrclient.cli.main import build_parser
from qrclient.config import ConfigError, config_path, load_config, parse_config
from qrclient.config.edit import add_node, remove_node
from qrclient.config.model import Config, NodeConfig
from qrclient.config.toml_text import key_lines, split_statements, without_table
from qrclient.net import Peer, Settings, Timeouts
from qrclient.net.peer import NodeError
from qrclient.net.tls import TlsSettings
from qrclient.vocabulary import Method, Model

GOOD = """\
# qrclient settings
ae_title = "WORKSTATION"      # our AE title
store = "dicom-store"         # relative to this file's folder
max_pdu = 65536
parallel = 3
listen = "127.0.0.1:11200"

[timeouts]
connect = 3
dimse = 45.5

# The hospital PACS
[nodes.pacs]
ae_title = "ORTHANC"
host = "pacs.example.org"
port = 4242
model = "patient"
method = "move"
destination = "ARCHIVE"
listen = 11300
parallel = 6
timeouts = { dimse = 120 }
tls = { ca = "ca.pem", cert = "me.pem", key = "me.key", server_name = "pacs.local" }

[nodes.research]
ae_title = "RESEARCH"
host = "::1"
port = 104
tls = true
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path} ")
    return message[len(str(path)) + 1 :]


# -- good files -------------------------------------------------------------------------


def test_full_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.ae_title == "WORKSTATION"
    assert config.store == tmp_path / "dicom-store"
    assert config.max_pdu == 65536
    assert sorted(config.nodes) == ["pacs", "research"]
    pacs = config.nodes["pacs"]
    assert pacs.name == "pacs"
    assert pacs.peer == Peer("ORTHANC", "pacs.example.org", 4242)
    assert pacs.model is Model.PATIENT
    assert pacs.method is Method.MOVE
    assert pacs.destination == "ARCHIVE"
    assert (pacs.listen_host, pacs.listen_port) == ("0.0.0.0", 11300)
    assert pacs.parallel == 6
    # Each timeout: the node's, else the file's [timeouts], else the built-in default.
    assert pacs.timeouts == Timeouts(connect=3.0, association=30.0, dimse=120.0, network=30.0)
    assert pacs.tls == TlsSettings(
        str(tmp_path / "ca.pem"),
        str(tmp_path / "me.pem"),
        str(tmp_path / "me.key"),
        True,
        "pacs.local",
    )
    research = config.nodes["research"]
    assert research.peer == Peer("RESEARCH", "::1", 104)
    assert research.tls == TlsSettings()
    # Unset node settings come from the file's top level.
    assert research.model is Model.STUDY
    assert research.method is Method.AUTO
    assert (research.listen_host, research.listen_port) == ("127.0.0.1", 11200)
    assert research.parallel == 3
    assert research.timeouts == Timeouts(connect=3.0, dimse=45.5)
    assert research.listen == "127.0.0.1:11200"


def test_settings_for_a_node(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    settings = config.settings(config.nodes["pacs"])
    assert settings.calling_ae == "WORKSTATION"
    assert settings.max_pdu == 65536
    assert settings.timeouts.dimse == 120.0
    assert settings.tls is not None
    assert settings.tls.server_name == "pacs.local"
    assert config.nodes["research"].settings("ME").calling_ae == "ME"


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "# nothing yet\n"))
    assert config == Config(tmp_path / "config.toml")
    assert config.ae_title == "QRCLIENT"
    assert config.store is None
    assert config.nodes == {}


def test_home_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_config(write(tmp_path, 'store = "~/dicom"\n'))
    assert config.store == tmp_path / "home" / "dicom"


def test_resolve_name_or_address(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.resolve("pacs") is config.nodes["pacs"]
    ad_hoc = config.resolve("OTHER@10.0.0.1:11112")
    assert ad_hoc.peer == Peer("OTHER", "10.0.0.1", 11112)
    assert not ad_hoc.configured
    assert ad_hoc.name == "OTHER@10.0.0.1:11112"
    # AET@host:port takes the file's defaults, not any node's.
    assert ad_hoc.parallel == 3
    assert ad_hoc.timeouts == Timeouts(connect=3.0, dimse=45.5)
    assert ad_hoc.tls is None
    assert config.resolve("V6@[::1]:104").name == "V6@[::1]:104"


def test_resolve_unknown_name(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    with pytest.raises(NodeError, match=r"'pcas' is neither a configured name .*pacs, research"):
        config.resolve("pcas")
    with pytest.raises(NodeError, match="70000"):
        config.resolve("PACS@h:70000")


# -- which file -----------------------------------------------------------------------


def test_missing_default_file_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QRCLIENT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path, named_by = config_path()
    assert path == tmp_path / "qrclient" / "config.toml"
    assert named_by is None
    assert load_config() == Config(path)


def test_default_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QRCLIENT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "qrclient").mkdir()
    write(tmp_path / "qrclient", 'ae_title = "FROMDEFAULT"\n')
    assert load_config().ae_title == "FROMDEFAULT"


def test_environment_variable_then_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = write(tmp_path, 'ae_title = "ENV"\n', "env.toml")
    from_arg = write(tmp_path, 'ae_title = "ARG"\n', "arg.toml")
    monkeypatch.setenv("QRCLIENT_CONFIG", str(from_env))
    assert load_config().ae_title == "ENV"
    assert load_config(from_arg).ae_title == "ARG"
    assert load_config(str(from_arg)).ae_title == "ARG"


def test_missing_named_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such configuration file$"):
        load_config(tmp_path / "nope.toml")
    monkeypatch.setenv("QRCLIENT_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone\.toml: no such .*\$QRCLIENT_CONFIG"):
        load_config()


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config(tmp_path)  # a folder
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'ae_title = "\xff"\n')
    with pytest.raises(ConfigError, match=r"binary\.toml: not UTF-8 text \(byte 12\)"):
        load_config(binary)


# -- broken files: one line naming file, line and field --------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '[nodes.pacs]\nae_title = "P"\nhost = "h"\nport = 4242\nport = 4243\n',
            "line 5, column 12: nodes.pacs.port: cannot overwrite a value (not valid TOML)",
            id="duplicate-key",
        ),
        pytest.param(
            '# top\n\n[nodes.pacs]\nhost = "unterminated\n',
            "line 4, column 21: nodes.pacs.host: illegal character",
            id="unterminated-string",
        ),
        pytest.param(
            "ae_title = QRCLIENT\n",
            "line 1, column 12: ae_title: invalid value (not valid TOML)",
            id="bare-word-value",
        ),
        pytest.param(
            "[nodes.pacs\n",
            "line 1, column 12: nodes.pacs: expected ']' at the end of a table",
            id="unclosed-header",
        ),
        pytest.param(
            "parallel = \n\n\n",
            "line 1, column 12: parallel: invalid value",
            id="missing-value",
        ),
    ],
)
def test_syntax_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert config_error(tmp_path, text).startswith(expected)


BAD_VALUES = [
    pytest.param(
        "\n\n[nodes.pacs]\nae_title = 'P'\nhost = 'h'\n\nport = 70000\n",
        "line 7: nodes.pacs.port = 70000: expected a TCP port 1-65535",
        id="port-out-of-range",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = '4242'\n",
        'line 4: nodes.pacs.port = "4242": expected a TCP port 1-65535',
        id="port-is-a-string",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'SEVENTEEN_CHARS_X'\nhost = 'h'\nport = 1\n",
        'line 2: nodes.pacs.ae_title = "SEVENTEEN_CHARS_X": expected the node\'s AE title',
        id="ae-title-too-long",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'bad host!'\nport = 1\n",
        'line 3: nodes.pacs.host = "bad host!": expected a host name or IP address',
        id="bad-host",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nport = 1\n",
        "line 1: nodes.pacs: missing host",
        id="missing-host",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = 1\nhots = 'x'\n",
        "line 5: nodes.pacs.hots: unknown setting: expected one of ae_title, host, port",
        id="unknown-node-setting",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = 1\nmethod = 'fetch'\n",
        'line 5: nodes.pacs.method = "fetch": expected get, move or auto',
        id="bad-method",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = 1\nmodel = 'flat'\n",
        'line 5: nodes.pacs.model = "flat": expected patient or study',
        id="bad-model",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = 1\nparallel = 0\n",
        "line 5: nodes.pacs.parallel = 0: expected 1 to 16 associations",
        id="parallel-0",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = 1\nlisten = 'h:port'\n",
        'line 5: nodes.pacs.listen = "h:port": expected [HOST:]PORT',
        id="bad-listen",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = 1\ndestination = ''\n",
        'line 5: nodes.pacs.destination = "": expected an AE title',
        id="empty-destination",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = 1\n\n[nodes.pacs.timeouts]\n"
        "connect = 5\ndimse = -1\n",
        "line 8: nodes.pacs.timeouts.dimse = -1: expected 0 < seconds <= 86400",
        id="negative-timeout-subtable",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = 1\ntimeouts = { dimse = true }\n",
        "line 5: nodes.pacs.timeouts.dimse = true: expected 0 < seconds <= 86400",
        id="boolean-timeout-inline",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = 1\ntimeouts = { read = 5 }\n",
        "line 5: nodes.pacs.timeouts.read: unknown setting: expected one of connect, ",
        id="unknown-timeout",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = 1\ntls = 'yes'\n",
        'line 5: nodes.pacs.tls = "yes": expected true, false or a table',
        id="tls-not-a-table",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = 1\n[nodes.pacs.tls]\ncert = 'c.pem'\n",
        "line 5: nodes.pacs.tls: cert and key go together",
        id="tls-cert-without-key",
    ),
    pytest.param(
        "[nodes.pacs]\nae_title = 'P'\nhost = 'h'\nport = 1\ntls = { verify = 'no' }\n",
        'line 5: nodes.pacs.tls.verify = "no": expected true or false',
        id="tls-verify-not-boolean",
    ),
    pytest.param(
        '[nodes."main pacs"]\nae_title = "P"\n',
        "line 1: nodes.\"main pacs\": node names are letters, digits, '-' and '_'",
        id="bad-node-name",
    ),
    pytest.param("nodes = 3\n", "line 1: nodes = 3: expected a table", id="nodes-not-a-table"),
    pytest.param(
        "[nodes]\npacs = 'P@h:1'\n", 'line 2: nodes.pacs = "P@h:1": expected a table', id="node-str"
    ),
    pytest.param("# c\nae_title = 5\n", "line 2: ae_title = 5: expected our AE title", id="aet"),
    pytest.param("store = ''\n", 'line 1: store = "": expected a folder path', id="empty-store"),
    pytest.param("max_pdu = 100\n", "line 1: max_pdu = 100: expected 4096 to", id="max-pdu"),
    pytest.param(
        "max_instance = '4X'\n", 'line 1: max_instance = "4X": expected 1K to 1T', id="max-inst"
    ),
    pytest.param("max_instance = 10\n", "line 1: max_instance = 10: expected 1K", id="max-inst-10"),
    pytest.param(
        "[timeouts]\nconnect = 0\n",
        "line 2: timeouts.connect = 0: expected 0 < seconds",
        id="global-timeout",
    ),
    pytest.param(
        "colour = 'blue'\n",
        "line 1: colour: unknown setting: expected one of ae_title, store",
        id="unknown-global",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_VALUES)
def test_bad_values_name_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert config_error(tmp_path, text).startswith(expected)


# -- precedence: option > node > file > built in ---------------------------------------


# The command checks TLS files (they must be PEM): here only TLS on or off matters.
SYSTEM_TLS = GOOD.replace(
    'tls = { ca = "ca.pem", cert = "me.pem", key = "me.key", server_name = "pacs.local" }',
    "tls = true",
)


def settings_for(config: Path, *args: str) -> tuple[NodeConfig, Settings, str]:
    parsed = build_parser().parse_args(["find", "-l", "study", "--config", str(config), *args])
    _, node, settings = node_and_settings(parsed)
    return node, settings, str(parsed.model)


def test_node_settings_apply(tmp_path: Path) -> None:
    node, settings, model = settings_for(write(tmp_path, SYSTEM_TLS), "pacs")
    assert settings.calling_ae == "WORKSTATION"
    assert settings.max_pdu == 65536
    assert settings.timeouts == Timeouts(3.0, 30.0, 120.0, 30.0)
    assert settings.tls is not None
    assert model == "patient"
    assert node.peer == Peer("ORTHANC", "pacs.example.org", 4242)


def test_options_override_node_and_file(tmp_path: Path) -> None:
    _, settings, model = settings_for(
        write(tmp_path, SYSTEM_TLS),
        "pacs",
        "--aet",
        "OVERRIDE",
        "--max-pdu",
        "8192",
        "--connect-timeout",
        "1",
        "--dimse-timeout",
        "2",
        "-m",
        "study",
    )
    assert settings.calling_ae == "OVERRIDE"
    assert settings.max_pdu == 8192
    assert settings.timeouts == Timeouts(1.0, 30.0, 2.0, 30.0)
    assert model == "study"


def test_address_takes_file_defaults(tmp_path: Path) -> None:
    _, settings, model = settings_for(write(tmp_path, SYSTEM_TLS), "X@127.0.0.1:104")
    assert settings.calling_ae == "WORKSTATION"
    assert settings.timeouts == Timeouts(3.0, 30.0, 45.5, 30.0)
    assert settings.tls is None
    assert model == "study"


def test_built_in_defaults_without_a_file(tmp_path: Path) -> None:
    empty = write(tmp_path, "")
    _, settings, model = settings_for(empty, "X@127.0.0.1:104")
    assert settings.calling_ae == "QRCLIENT"
    assert settings.max_pdu == 1 << 20
    assert settings.timeouts == Timeouts()
    assert model == "study"


def test_bad_option_still_checked(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--dimse-timeout -1"):
        settings_for(write(tmp_path, SYSTEM_TLS), "pacs", "--dimse-timeout=-1")


# -- statements and lines --------------------------------------------------------------


def test_statements_cover_multi_line_values() -> None:
    text = 'a = """\n[not.a.table]\n"""\nb = [\n  1,\n  2,\n]\n[t]\nc = 1\n'
    statements = split_statements(text)
    assert [(s.kind.value, s.first, s.end) for s in statements] == [
        ("value", 0, 3),
        ("value", 3, 7),
        ("table", 7, 8),
        ("value", 8, 9),
    ]
    lines = key_lines(statements)
    assert lines[("b",)] == 4
    assert lines[("t", "c")] == 9
    assert ("not", "a", "table") not in lines


# -- editing the text ------------------------------------------------------------------

COMMENTED = """\
# My qrclient settings.
ae_title = "ME"  # who we are

# -- nodes --

[nodes.a]
ae_title = "A"   # first
host = "h"
port = 1

# B: the research PACS
[nodes.b]
ae_title = "B"
# a comment inside b
host = "h"
port = 2
[nodes.b.timeouts]
connect = 4

# C comment
[nodes.c]
ae_title = "C"
host = "h"
port = 3
# the end
"""


def test_remove_keeps_everything_else() -> None:
    assert without_table(COMMENTED, ("nodes", "b")) == COMMENTED.replace(
        '# B: the research PACS\n[nodes.b]\nae_title = "B"\n# a comment inside b\n'
        'host = "h"\nport = 2\n[nodes.b.timeouts]\nconnect = 4\n\n',
        "",
    )


def test_remove_last_node_keeps_trailing_comment() -> None:
    result = without_table(COMMENTED, ("nodes", "c"))
    assert result.endswith("connect = 4\n\n# the end\n")
    assert "C comment" not in result
    assert "[nodes.c]" not in result


def test_remove_dotted_and_inline_forms() -> None:
    text = "[nodes]\na = { ae_title = 'A', host = 'h', port = 1 }\nb.ae_title = 'B'\nb.port = 2\n"
    assert without_table(text, ("nodes", "b")) == (
        "[nodes]\na = { ae_title = 'A', host = 'h', port = 1 }\n"
    )
    assert without_table(text, ("nodes", "a")) == "[nodes]\nb.ae_title = 'B'\nb.port = 2\n"


def test_remove_keeps_crlf() -> None:
    text = "# c\r\n\r\n[nodes.a]\r\nport = 1\r\n\r\n[nodes.b]\r\nport = 2\r\n"
    assert without_table(text, ("nodes", "a")) == "# c\r\n\r\n[nodes.b]\r\nport = 2\r\n"


NODE = {"ae_title": "NEW", "host": "10.1.2.3", "port": 104}


def test_add_appends_and_keeps_the_text(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    config = add_node(path, "new", {**NODE, "method": "get", "timeouts": {"dimse": 90.0}})
    text = path.read_text()
    assert text.startswith(COMMENTED)
    assert text[len(COMMENTED) :] == (
        '\n[nodes.new]\nae_title = "NEW"\nhost = "10.1.2.3"\nport = 104\nmethod = "get"\n\n'
        "[nodes.new.timeouts]\ndimse = 90.0\n"
    )
    assert config.nodes["new"].method is Method.GET
    assert load_config(path).nodes["new"].timeouts.dimse == 90.0


def test_add_creates_the_file_and_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "config.toml"
    add_node(path, "pacs", NODE)
    assert load_config(path).nodes["pacs"].peer == Peer("NEW", "10.1.2.3", 104)
    assert path.read_text().startswith("# qrclient configuration")


def test_add_refuses_existing_name_unless_replace(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    with pytest.raises(NodeError, match="node 'b' already exists in .*: use --replace"):
        add_node(path, "b", NODE)
    assert path.read_text() == COMMENTED
    add_node(path, "b", NODE, replace=True)
    text = path.read_text()
    # In place: the comment above it and the nodes around it are as they were.
    assert '# B: the research PACS\n[nodes.b]\nae_title = "NEW"\n' in text
    assert "a comment inside b" not in text
    assert "connect = 4" not in text
    assert text.replace(text[text.index("[nodes.b]") : text.index("# C comment")], "") == (
        COMMENTED.replace(
            COMMENTED[COMMENTED.index("[nodes.b]") : COMMENTED.index("# C comment")], ""
        )
    )
    assert load_config(path).nodes["b"].peer.ae_title == "NEW"


def test_replace_inline_node_moves_it_to_the_end(tmp_path: Path) -> None:
    text = (
        "[nodes]\na = { ae_title = 'A', host = 'h', port = 1 }\n"
        "b = { ae_title = 'B', host = 'h', port = 2 }\n"
    )
    path = write(tmp_path, text)
    add_node(path, "a", NODE, replace=True)
    assert path.read_text() == (
        "[nodes]\nb = { ae_title = 'B', host = 'h', port = 2 }\n\n"
        '[nodes.a]\nae_title = "NEW"\nhost = "10.1.2.3"\nport = 104\n'
    )


def test_edit_that_would_touch_other_nodes_is_refused(tmp_path: Path) -> None:
    text = (
        "nodes = { a = { ae_title = 'A', host = 'h', port = 1 }, "
        "b = { ae_title = 'B', host = 'h', port = 2 } }\n"
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="cannot remove node 'a' by editing only its own lines"):
        remove_node(path, "a")
    with pytest.raises(ConfigError, match="cannot add node 'c'"):
        add_node(path, "c", NODE)
    assert path.read_text() == text


def test_broken_file_is_not_edited(tmp_path: Path) -> None:
    text = "[nodes.a]\nport = 70000\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="line 1: nodes.a: missing ae_title"):
        add_node(path, "b", NODE)
    with pytest.raises(ConfigError, match="line 1: nodes.a: missing ae_title"):
        remove_node(path, "a")
    assert path.read_text() == text


def test_bad_name_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    for name in ("", "with space", "a.b", "x@y", "n" * 65):
        with pytest.raises(NodeError, match="node name"):
            add_node(path, name, NODE)
    assert path.read_text() == COMMENTED


def test_remove_unknown_name(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    with pytest.raises(NodeError, match=r"no node named 'zz' in .* \(configured: a, b, c\)"):
        remove_node(path, "zz")
    with pytest.raises(ConfigError, match="no such configuration file"):
        remove_node(tmp_path / "none.toml", "a")


def test_remove_then_file_parses_to_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    before = tomllib.loads(COMMENTED)
    remove_node(path, "a")
    del before["nodes"]["a"]
    assert tomllib.loads(path.read_text()) == before


# -- atomic writes ---------------------------------------------------------------------


def test_write_replaces_the_file_by_rename(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    path.chmod(0o640)
    old_copy = tmp_path / "hard-link-to-the-old-file"
    os.link(path, old_copy)
    add_node(path, "new", NODE)
    # A rename leaves the old inode (still reachable by the hard link) untouched.
    assert old_copy.read_text() == COMMENTED
    assert path.stat().st_ino != old_copy.stat().st_ino
    assert "[nodes.new]" in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", old_copy.name]


def test_failed_write_leaves_the_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, COMMENTED)

    def broken_replace(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ConfigError, match="cannot write it: No space left on device"):
        add_node(path, "new", NODE)
    assert path.read_text() == COMMENTED
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


def test_symlinked_file_stays_a_symlink(tmp_path: Path) -> None:
    real = write(tmp_path, COMMENTED, "real.toml")
    link = tmp_path / "config-link.toml"
    link.symlink_to(real)
    remove_node(link, "a")
    assert link.is_symlink()
    assert "[nodes.a]" not in real.read_text()


def test_parse_config_names_the_given_path() -> None:
    with pytest.raises(ConfigError, match=r"^where\.toml line 1: "):
        parse_config("x = [", Path("where.toml"))


def test_only_lf_ends_a_line(tmp_path: Path) -> None:
    """TOML allows U+2028 and U+0085 in comments and strings; they end no line."""
    text = (
        'ae_title = "WS"  # a note\u2028more\u0085still the same line\n'
        "\n"
        "[nodes.pacs]\n"
        'ae_title = "P"\n'
        'host = "h"\n'
        "port = 70000\n"
    )
    with pytest.raises(ConfigError, match=r"line 6: nodes\.pacs\.port = 70000"):
        load_config(write(tmp_path, text))
    config = load_config(write(tmp_path, text.replace("70000", "104")))
    assert (config.ae_title, config.resolve("pacs").peer.port) == ("WS", 104)


def test_listen_accepts_what_the_option_accepts(tmp_path: Path) -> None:
    for listen, expected in (("11200", ("0.0.0.0", 11200)), (":11200", ("0.0.0.0", 11200))):
        config = load_config(write(tmp_path, f'listen = "{listen}"\n'))
        assert (config.defaults.listen_host, config.defaults.listen_port) == expected


# -- the largest instance received -------------------------------------------------------


def retrieve_settings(config: Path, *args: str) -> Settings:
    parsed = build_parser().parse_args(
        ["get", "X@127.0.0.1:104", "-k", "StudyInstanceUID=1.2", "--config", str(config), *args]
    )
    return node_and_settings(parsed)[2]


@pytest.mark.parametrize(
    ("text", "option", "expected"),
    [
        pytest.param("", None, 4 << 30, id="built-in"),
        pytest.param("max_instance = 1048576\n", None, 1 << 20, id="file-bytes"),
        pytest.param("max_instance = '500M'\n", None, 500 << 20, id="file-suffix"),
        pytest.param("max_instance = '500M'\n", "2GiB", 2 << 30, id="option-wins"),
        pytest.param("", "123456", 123456, id="option-bytes"),
    ],
)
def test_max_instance_from_option_file_or_default(
    tmp_path: Path, text: str, option: str | None, expected: int
) -> None:
    args = ["--max-instance", option] if option else []
    assert retrieve_settings(write(tmp_path, text), *args).max_instance == expected

"""Which node the UI means, with where our listener waits for it."""

from __future__ import annotations

from pathlib import Path

from qrclient.tui.nodes import NodeBook


def _book(tmp_path: Path, listen: tuple[str, int] | None = None) -> NodeBook:
    config = tmp_path / "config.toml"
    config.write_text(
        'listen = "0.0.0.0:11200"\n'
        '[nodes.own]\nae_title = "A"\nhost = "pacs"\nport = 104\nlisten = "127.0.0.1:11300"\n'
        '[nodes.inherits]\nae_title = "B"\nhost = "pacs"\nport = 105\n',
        encoding="utf-8",
    )
    return NodeBook.load(config, listen=listen)


def test_a_node_with_its_own_listen_address_keeps_it(tmp_path: Path) -> None:
    book = _book(tmp_path)
    assert book.resolve("own").listen == ("127.0.0.1", 11300)
    assert book.resolve("inherits").listen is None  # the app's: the file's default
    assert book.resolve("X@pacs:104").listen is None
    assert book.default_listen == ("0.0.0.0", 11200)


def test_listen_given_on_the_command_line_wins(tmp_path: Path) -> None:
    book = _book(tmp_path, listen=("127.0.0.1", 12000))
    assert book.resolve("own").listen is None
    assert book.default_listen == ("127.0.0.1", 12000)

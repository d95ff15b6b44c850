"""The terminal UI (Textual): query, browse, retrieve and troubleshoot in one app.

Imported only by ``qrclient tui`` (and ``qrclient`` alone on a terminal), so the rest of
the command line never pays for Textual.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qrclient.tui.nodes import NodeBook


def run(
    node: str | None = None,
    *,
    config_path: str | None = None,
    store: str | Path | None = None,
    calling_ae: str | None = None,
    listen: tuple[str, int] | None = None,
    nodes: NodeBook | None = None,
) -> int:
    """Open the app (optionally on ``node``); returns an exit code when it closes.

    Unset arguments come from the configuration (``config_path``, else the default
    file): our AE title, the store, the listener for C-MOVE. ``nodes``: the
    configuration already loaded (with ``calling_ae`` and ``listen`` applied).
    """
    import logging
    import sys

    from qrclient.net import Settings
    from qrclient.net.events import Observer
    from qrclient.store.location import default_store
    from qrclient.tui import preview
    from qrclient.tui.app import QrclientApp
    from qrclient.tui.backend import RealBackend
    from qrclient.tui.history import QueryHistory
    from qrclient.tui.nodes import NodeBook

    if nodes is None:
        try:
            nodes = NodeBook.load(config_path, calling_ae=calling_ae, listen=listen)
        except ValueError as exc:  # ConfigError: one line naming the file and the problem
            sys.stderr.write(f"qrclient: error: {exc}\n")
            return 2
    root = Path(store) if store else nodes.store or default_store()
    address = nodes.default_listen
    settings = Settings(nodes.calling_ae, nodes.config.max_pdu)

    def backend(observer: Observer) -> RealBackend:
        return RealBackend(
            root, settings, observer=observer, listen=address, config_path=config_path
        )

    if preview.missing() is None:
        # textual-image asks the terminal what it can draw: before Textual takes it over.
        # A terminal that does not answer (a pty, some SSH clients) is not an error for
        # us: textual-image falls back to half blocks, and its warning, with a traceback,
        # would otherwise land on the user's screen through logging's last resort.
        logging.getLogger("textual_image").addHandler(logging.NullHandler())
        import textual_image.widget  # noqa: F401

    history = QueryHistory(root)  # in the store: past queries name patients
    app = QrclientApp(backend, node=node or "", nodes=nodes, history=history)
    result = app.run()
    return int(result or 0)

"""The client every face goes through: one node, resolved once, and what to do with it.

:func:`resolve` turns a node (a configured name, ``AET@host:port`` or a :class:`Peer`),
the configuration and the caller's overrides into one :class:`Connection`: the peer,
the association settings (our AE title, max PDU, timeouts, TLS, observer), the
retrieve method, the C-MOVE destination, our listen address, the store. Each value
comes from the override if given, else the node's setting, else the file's, else the
built-in default.

:class:`Client` runs ``echo``, ``find``, ``retrieve`` and ``doctor`` with it.
Retrieves land in a :class:`Local`: the store, opened while retrieves run, and our
storage listeners (one per address, shared by every retrieve moving to us). A face
with several clients (the UI) hands them one ``Local``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Self

import anyio
from anyio.abc import TaskGroup, TaskStatus

from qrclient.config import Config, NodeConfig, load_config
from qrclient.net.association import open_association
from qrclient.net.errors import ListenFailed
from qrclient.net.events import Observer
from qrclient.net.peer import Peer
from qrclient.net.presentation import ContextRequest, QueryOptions
from qrclient.net.settings import Settings, Timeouts
from qrclient.net.tls import TlsSettings
from qrclient.net.uids import VERIFICATION
from qrclient.vocabulary import Level, Method, Model

if TYPE_CHECKING:
    from types import TracebackType

    from qrclient.deid.session import PseudonymizeOptions
    from qrclient.deid.sink import PseudonymizingStore
    from qrclient.jobs.doctor import Report
    from qrclient.jobs.retrieve import RetrieveJob, RetrieveOutcome, RetrieveRequest
    from qrclient.net.listener import Refusal, StorageListener
    from qrclient.ops.find import FindRequest, FindResults
    from qrclient.ops.move import MoveRouter
    from qrclient.ops.progress import Progress
    from qrclient.ops.query import Key, Query
    from qrclient.store import Store

# The node's TLS, replaced (TlsSettings), or rebuilt from it (the command line's options).
TlsOverride = TlsSettings | Callable[[TlsSettings | None], TlsSettings | None]


class OptionError(ValueError):
    """A setting that cannot be used as given; one line saying what is expected."""


@dataclass(frozen=True, slots=True)
class Connection:
    """How to work with one node: every value resolved, from the caller to the defaults."""

    node: NodeConfig  # as configured: name, model, timeouts, TLS...
    settings: Settings  # our AE title, max PDU, timeouts, TLS, observer, max instance
    method: Method
    destination: str  # C-MOVE destination; our own AE title: to our listener
    listen: tuple[str, int]  # where our storage listener waits for C-MOVEs to us
    store: Path | None  # the local store; None: qrclient's default (see store_root)
    parallel: int
    move_from: tuple[str, ...]  # where else its C-MOVE deliveries may come from
    model: Model

    @property
    def peer(self) -> Peer:
        return self.node.peer

    @property
    def name(self) -> str:
        """The configured name ("" for ``AET@host:port`` given directly)."""
        return self.node.name if self.node.configured else ""

    @property
    def store_root(self) -> Path:
        """The local store's folder (qrclient's default one is found only when asked:
        a command that stores nothing never imports the store)."""
        if self.store is not None:
            return self.store
        from qrclient.store.location import default_store

        return default_store()

    @property
    def to_us(self) -> bool:
        """A C-MOVE comes to our listener (not to another AE)."""
        return self.destination == self.settings.calling_ae

    def observed(self, observer: Observer | None) -> Connection:
        return replace(self, settings=replace(self.settings, observer=observer))


def resolve(
    node: str | Peer | NodeConfig,
    config: Config | str | Path | None = None,
    *,
    settings: Settings | None = None,
    calling_ae: str | None = None,
    max_pdu: int | None = None,
    max_instance: int | None = None,
    timeouts: Mapping[str, float | None] | None = None,
    tls: TlsOverride | None = None,
    observer: Observer | None = None,
    model: Model | str | None = None,
    method: Method | str | None = None,
    destination: str | None = None,
    listen: tuple[str, int] | None = None,
    store: str | Path | None = None,
    parallel: int | None = None,
    move_from: tuple[str, ...] | None = None,
) -> Connection:
    """The one resolution of a node and its settings (see the module docstring).

    ``config``: a loaded configuration, or the file to read (None: $QRCLIENT_CONFIG,
    else qrclient's config.toml, else the built-in defaults). ``settings`` replaces the
    association settings altogether (the API's ``settings=``); ``timeouts`` overrides
    some by name (``connect``, ``association``, ``dimse``, ``network``). Raises
    ConfigError or NodeError (ValueErrors, one line) for an unusable file or node.
    """
    if not isinstance(config, Config):
        config = load_config(config)
    if isinstance(method, str):
        method = Method(method.lower())  # ValueError naming the value if unknown
    if isinstance(model, str):
        from qrclient.ops.query import parse_model

        model = parse_model(model)
    if isinstance(node, NodeConfig):
        configured = node
    elif isinstance(node, Peer):
        configured = config.ad_hoc(node)
    else:
        configured = config.resolve(node)
    if timeouts:
        own = configured.timeouts
        chosen: dict[str, float] = {
            name: value if (value := timeouts.get(name)) is not None else getattr(own, name)
            for name in ("connect", "association", "dimse", "network")
        }
        configured = replace(configured, timeouts=Timeouts(**chosen))
    if tls is not None:
        configured = replace(
            configured, tls=tls if isinstance(tls, TlsSettings) else tls(configured.tls)
        )
    if settings is None:
        settings = configured.settings(
            config.calling_ae(configured, calling_ae),
            config.max_pdu if max_pdu is None else max_pdu,
            observer,
            config.max_instance if max_instance is None else max_instance,
        )
    elif observer is not None:
        settings = replace(settings, observer=observer)
    return Connection(
        configured,
        settings,
        method or configured.method,
        destination or configured.destination or settings.calling_ae,
        listen or (configured.listen_host, configured.listen_port),
        Path(store) if store is not None else config.store,
        configured.parallel if parallel is None else parallel,
        configured.move_from if move_from is None else move_from,
        model or configured.model,
    )


@dataclass(slots=True)
class EchoResult:
    peer: Peer
    association_seconds: float
    peer_version: str  # its implementation version name, "" if it gave none
    peer_class_uid: str
    peer_max_pdu: int  # 0: unlimited
    round_trips: list[float] = field(default_factory=list)  # seconds


class Client:
    """echo, find, retrieve and doctor against one node; use as ``async with``.

    ``node`` is a configured name, ``AET@host:port``, a Peer, or a Connection already
    resolved; ``config`` and ``overrides`` are :func:`resolve`'s. Retrieves go into
    ``local`` when given (shared with other clients), else into a Local of the
    client's own over the connection's store, closed with the client (a retrieve on
    auto whose listener cannot start uses C-GET there, saying why in its notes).
    """

    def __init__(
        self,
        node: str | Peer | Connection,
        *,
        config: Config | str | Path | None = None,
        local: Local | None = None,
        **overrides: object,
    ) -> None:
        if isinstance(node, Connection):
            self.connection = node
        else:
            self.connection = resolve(node, config, **overrides)  # type: ignore[arg-type]
        self._local = local
        self._own_local: Local | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._own_local is not None:
            local, self._own_local = self._own_local, None
            await local.aclose()

    @property
    def local(self) -> Local:
        if self._local is None:
            self._local = self._own_local = Local(
                self.connection.store_root, get_if_cannot_listen=True
            )
        return self._local

    async def echo(
        self,
        count: int = 1,
        *,
        on_associated: Callable[[EchoResult], None] | None = None,
        on_echo: Callable[[int, float], None] | None = None,
    ) -> EchoResult:
        """C-ECHO ``count`` times on one association; each round trip in seconds."""
        from qrclient.ops.echo import echo

        connection = self.connection
        started = time.perf_counter()
        async with open_association(
            connection.peer, [ContextRequest(VERIFICATION)], connection.settings
        ) as association:
            result = EchoResult(
                connection.peer,
                time.perf_counter() - started,
                association.peer_implementation_version_name or "",
                str(association.peer_implementation_class_uid or ""),
                association.peer_max_pdu or 0,
            )
            if on_associated is not None:
                on_associated(result)
            for number in range(1, count + 1):
                result.round_trips.append(await echo(association))
                if on_echo is not None:
                    on_echo(number, result.round_trips[-1])
        return result

    def query(
        self,
        level: str | Level,
        keys: Iterable[str | Key] = (),
        *,
        model: str | Model | None = None,
        default_keys: bool = True,
        lenient: bool = False,
    ) -> Query:
        """A C-FIND query for this node (its model unless ``model``); QueryError if bad."""
        from qrclient.ops.query import build_query, parse_level, parse_model

        if isinstance(model, str):
            model = parse_model(model)
        return build_query(
            level if isinstance(level, Level) else parse_level(level),
            model or self.connection.model,
            keys,
            default_keys=default_keys,
            lenient=lenient,
        )

    @asynccontextmanager
    async def find(
        self,
        query: FindRequest,
        *,
        query_options: QueryOptions | None = None,
        distinct: bool = True,
    ) -> AsyncIterator[FindResults]:
        """C-FIND: the stream of matches; ``.outcome`` holds the final status.

        ``distinct`` (a :class:`Query`): each match once, without those contradicting a
        key the peer ignored, as the command line and the UI show them; else every
        response as the peer sent it (any request, e.g. a worklist query).
        """
        from qrclient.ops.find import find, find_distinct
        from qrclient.ops.query import Query

        wanted = query_options if query_options is not None and query_options.wanted else None
        context = ContextRequest(query.sop_class, query_options=wanted)
        connection = self.connection
        async with open_association(connection.peer, [context], connection.settings) as assoc:
            if distinct:
                assert isinstance(query, Query), "distinct matches need a Query"
                async with find_distinct(assoc, query) as matches:
                    yield matches
            else:
                async with find(assoc, query) as results:
                    yield results

    def request(
        self,
        keys: Iterable[str | Key],
        *,
        level: str | Level = Level.STUDY,
        model: str | Model | None = None,
    ) -> RetrieveRequest:
        """A retrieve request for this node (its model unless ``model``); QueryError if bad."""
        from qrclient.jobs.retrieve import RetrieveRequest
        from qrclient.ops.query import parse_level, parse_model

        if isinstance(model, str):
            model = parse_model(model)
        return RetrieveRequest.parse(
            level if isinstance(level, Level) else parse_level(level),
            model or self.connection.model,
            list(keys),
        )

    async def retrieve(
        self,
        request: RetrieveRequest,
        *,
        watch: Callable[[Progress], Coroutine[object, object, None]] | None = None,
        on_start: Callable[[RetrieveJob], None] | None = None,
    ) -> RetrieveOutcome:
        """Retrieve into the store (or to the destination AE) by the connection's method.

        ``watch`` runs beside the job with its progress (cancelled when the job ends);
        ``on_start`` gets the job before it runs (its ``outcome`` so far, if
        interrupted). Errors come as themselves, not in exception groups.
        """
        return await self.local.retrieve(self.connection, request, watch=watch, on_start=on_start)

    async def doctor(self, *, move_wait: float = 20.0) -> Report:
        """Check the node end to end (qrclient.jobs.doctor); our listener at ``listen``."""
        from qrclient.jobs.doctor import DoctorOptions, diagnose_peer

        host, port = self.connection.listen
        options = DoctorOptions(host, port, move_wait)
        return await diagnose_peer(self.connection.peer, self.connection.settings, options)


class _SharedListener:
    """Our storage listener on one address, serving every retrieve that moves to us."""

    def __init__(self, router: MoveRouter) -> None:
        self.router = router
        self.listener: StorageListener | None = None
        self._stop: anyio.Event | None = None
        self._stopped = anyio.Event()

    @property
    def refusals(self) -> int:
        return len(self.listener.refusals) if self.listener is not None else 0

    def refused_since(self, count: int) -> list[Refusal]:
        return self.listener.refusals[count:] if self.listener is not None else []

    @property
    def alive(self) -> bool:
        return self._stop is not None and not self._stopped.is_set()

    async def serve(
        self,
        host: str,
        port: int,
        settings: Settings,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` until stopped; raises the listener's error (ListenFailed)."""
        from qrclient.jobs.retrieve import move_listener

        self._stop = anyio.Event()
        try:
            async with move_listener(self.router, host, port, settings) as listener:
                self.listener = listener
                task_status.started()
                await self._stop.wait()
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
            await self._stopped.wait()


class Local:
    """Where retrieves land: the store and our storage listeners, shared by clients.

    The store is opened (and locked) only while retrieves run, so another qrclient can
    use it in between. C-MOVEs to us share one listener per address, started by the
    first retrieve that moves to us and stopped with the last. ``max_jobs``: retrieves
    running at once (the others wait their turn). ``get_if_cannot_listen``: the
    listener starts with a retrieve moving to us, and one on auto whose listener cannot
    start uses C-GET, saying why (the UI); else it binds its port when a job first
    moves to us, and a failure to listen ends that job (the command line). Unless
    ``pseudonymize``, a retrieve to us refuses a pseudonymised store
    (qrclient.deid.marker), so plain and pseudonymised instances never mix.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        overwrite: bool = False,
        wait: float = 0.0,
        pseudonymize: PseudonymizeOptions | None = None,
        max_jobs: int = 2,
        get_if_cannot_listen: bool = False,
    ) -> None:
        self.root = Path(root)
        self._overwrite = overwrite
        self._wait = wait
        self._pseudonymize = pseudonymize
        self._get_if_cannot_listen = get_if_cannot_listen
        self.store: Store | None = None
        self._sink: PseudonymizingStore | None = None
        self._listeners: dict[tuple[str, int], _SharedListener] = {}
        self._tasks: TaskGroup | None = None
        self._tasks_done: anyio.Event | None = None
        # Opening the store and listeners, and closing them, one at a time: retrieves
        # start in the same tick, and one may start while the last one's are closing.
        self._lock = anyio.Lock()
        self._holding = anyio.Lock()
        self._slots = anyio.Semaphore(max_jobs)  # a big selection must not flood the PACS
        self._retrieving = 0
        self._idle = anyio.Event()  # no retrieve running: the store may be closed
        self._idle.set()

    async def retrieve(
        self,
        connection: Connection,
        request: RetrieveRequest,
        *,
        watch: Callable[[Progress], Coroutine[object, object, None]] | None = None,
        on_start: Callable[[RetrieveJob], None] | None = None,
    ) -> RetrieveOutcome:
        from qrclient.present.failures import main_error

        _check_listener_tls(connection)
        async with self._slots:
            self._retrieving += 1
            self._idle = anyio.Event()
            notes: list[str] = []
            try:
                outcome = await self._retrieve(connection, request, watch, on_start)
            except BaseExceptionGroup as group:
                # Task groups wrap what ended the job: report the error that matters.
                raise main_error(group) from None
            finally:
                self._retrieving -= 1
                if not self._retrieving:
                    # Shielded: a cancelled job must still give the store back.
                    with anyio.CancelScope(shield=True):
                        notes = await self._release()
            outcome.notes.extend(notes)
            return outcome

    async def _retrieve(
        self,
        connection: Connection,
        request: RetrieveRequest,
        watch: Callable[[Progress], Coroutine[object, object, None]] | None,
        on_start: Callable[[RetrieveJob], None] | None,
    ) -> RetrieveOutcome:
        from qrclient.jobs.retrieve import RetrieveJob, note_refusals

        sink, method, shared, note = await self._prepare(connection)
        refused_before = shared.refusals if shared is not None else 0
        unexpected_before = shared.router.unexpected.count if shared is not None else 0
        job = RetrieveJob.into_store(
            connection.peer,
            request,
            sink,
            connection.settings,
            parallel=connection.parallel,
            method=method,
            destination=connection.destination,
            router=shared.router if shared is not None else None,
            move_from=connection.move_from,
            node=connection.node.name,
        )
        if on_start is not None:
            on_start(job)
        async with anyio.create_task_group() as group:
            if watch is not None:
                group.start_soon(watch, job.progress)
            try:
                outcome = await job.run()
            finally:
                group.cancel_scope.cancel()
                if self.store is not None:
                    self.store.flush()  # the index names what arrived, even if killed
        if note:
            outcome.notes.insert(0, note)
        if shared is not None:
            # Refused while this job ran: perhaps its peer, under another AE title.
            note_refusals(outcome, shared.refused_since(refused_before))
            unexpected = shared.router.unexpected
            if unexpected.count > unexpected_before:
                outcome.refused_instances += unexpected.count - unexpected_before
                outcome.refuse(unexpected.reasons)
        return outcome

    async def _open(self, connection: Connection) -> Store | PseudonymizingStore:
        """The store (pseudonymising what it receives, if asked), opened once."""
        from qrclient.store import Store

        if self.store is None:
            store = Store.open(self.root, overwrite=self._overwrite, wait=self._wait)
            try:
                if self._pseudonymize is not None:
                    self._sink = receiving_sink(store, self._pseudonymize, to_us=True)
            except BaseException:
                store.close()
                raise
            self.store = store
        if self._sink is not None:
            return self._sink
        receiving_sink(self.store, None, to_us=connection.to_us)
        return self.store

    async def _prepare(
        self, connection: Connection
    ) -> tuple[Store | PseudonymizingStore, Method, _SharedListener | None, str]:
        """The store, the method to use, the listener for moves to us, and a note when
        the listener cannot start and C-GET is used instead."""
        from qrclient.ops.move import MoveRouter
        from qrclient.present.failures import describe, main_error

        async with self._lock:
            if self._pseudonymize is not None and not connection.to_us:
                raise OptionError(
                    "--pseudonymize works on what comes to our store, not on a C-MOVE to "
                    "another AE (--dest)"
                )
            sink = await self._open(connection)
            settings = connection.settings
            if connection.method is Method.GET or not connection.to_us:
                return sink, connection.method, None, ""
            address = connection.listen
            shared = self._listeners.get(address)
            if shared is not None and (shared.alive or not self._get_if_cannot_listen):
                if shared.router.our_ae == settings.calling_ae:
                    return sink, connection.method, shared, ""
                # A node with a calling AE title of its own: the PACS connects to that one.
                busy = f"our listener there answers as {shared.router.our_ae}"
                if connection.method is Method.MOVE or not self._get_if_cannot_listen:
                    raise ListenFailed(
                        f"cannot also listen as {settings.calling_ae} on {address[1]}: {busy}",
                        "give this node its own listen address, or wait for the other retrieve",
                    )
                return sink, Method.GET, None, f"no C-MOVE to us ({busy}): using C-GET"
            shared = _SharedListener(MoveRouter(settings.calling_ae, sink))
            if not self._get_if_cannot_listen:
                # Bound when a job first moves to us: a retrieve that turns out to use
                # C-GET, or finds everything here, must not fail on a port in use.
                starting = anyio.Lock()

                async def start() -> None:
                    async with starting:
                        if not shared.alive:
                            await self._start(shared, address, settings)

                shared.router.start_listening = start
                self._listeners[address] = shared
                return sink, connection.method, shared, ""
            try:
                await self._start(shared, address, settings)
            except Exception as exc:
                error = main_error(exc)
                if connection.method is Method.MOVE:
                    raise error from None
                # No listener: C-GET is the only way left; say why.
                why, _ = describe(error)
                return sink, Method.GET, None, f"no C-MOVE to us ({why}): using C-GET"
            self._listeners[address] = shared
            return sink, connection.method, shared, ""

    async def _start(
        self, shared: _SharedListener, address: tuple[str, int], settings: Settings
    ) -> None:
        """Start the listener in a task group of its own, which lives until release."""
        async with self._holding:  # one task group, however many listeners start
            if self._tasks is None:
                ready = anyio.Event()
                self._tasks_done = anyio.Event()
                failure: list[BaseException] = []

                async def hold() -> None:
                    assert self._tasks_done is not None
                    try:
                        async with anyio.create_task_group() as group:
                            self._tasks = group
                            ready.set()
                            await anyio.sleep_forever()
                    except BaseException as exc:
                        failure.append(exc)
                    finally:
                        self._tasks = None
                        self._tasks_done.set()

                # The listeners outlive the retrieve that started them: a detached task
                # of the running loop holds their task group until the last one ends.
                _spawn(hold)
                await ready.wait()
        assert self._tasks is not None
        await self._tasks.start(shared.serve, *address, settings)

    async def _release(self, *, force: bool = False) -> list[str]:
        """Between retrieves hold nothing: the store's lock (so a command-line retrieve
        can use the same store while the UI stays open) and our listeners' ports.
        Returns notes for the last retrieve (what was pseudonymised)."""
        async with self._lock:
            if self._retrieving and not force:
                return []  # one started while we waited: it uses what is open
            listeners, self._listeners = list(self._listeners.values()), {}
            for listener in listeners:
                with suppress(Exception):  # stopping: nothing to report
                    await listener.stop()
            if self._tasks is not None:
                self._tasks.cancel_scope.cancel()
                assert self._tasks_done is not None
                await self._tasks_done.wait()
            notes = []
            sink, self._sink = self._sink, None
            store, self.store = self.store, None
            try:
                if sink is not None:
                    sink.close()
                    notes.append(pseudonymized_note(sink))
            finally:
                try:
                    if store is not None:
                        store.close()  # StoreError if its last rows cannot be committed
                finally:
                    self._idle.set()
            return notes

    async def aclose(self) -> None:
        # Cancelled retrieves finish their C-CANCEL (a few seconds at most) before the
        # store they write into is closed.
        with anyio.move_on_after(10):
            await self._idle.wait()
        await self._release(force=True)


def _spawn(function: Callable[[], Coroutine[object, object, None]]) -> None:
    """Run ``function`` as a task of the running event loop, beside the caller's."""
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio.lowlevel

        trio.lowlevel.spawn_system_task(function)
    else:
        task = asyncio.get_running_loop().create_task(function())
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)


_TASKS: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references to tasks


def _check_listener_tls(connection: Connection) -> None:
    """A C-MOVE to us over TLS: our listener presents our certificate and trusts only
    the CA given for the PACS's certificate (a system CA would let anyone in)."""
    tls = connection.settings.tls
    if tls is None or connection.method is not Method.MOVE or not connection.to_us:
        return
    if tls.cert_file is None:
        raise OptionError(
            "C-MOVE to us over TLS: our storage listener needs a certificate: give "
            "--tls-cert FILE (and --tls-key FILE), or --dest another AE"
        )
    if tls.verify and tls.ca_file is None:
        raise OptionError(
            "C-MOVE to us over TLS: our storage listener trusts only the CA that signed the "
            "PACS's certificate, never the system's: give --tls-ca FILE (or the node's "
            "tls.ca), or --dest another AE"
        )


def receiving_sink(
    store: Store, pseudonymize: PseudonymizeOptions | None, *, to_us: bool
) -> PseudonymizingStore | None:
    """With ``pseudonymize``, ``store`` wrapped to pseudonymise what it receives; else
    None, after refusing a pseudonymised store for plain instances coming to us. A
    pseudonymised store takes no plain instances, nor a plain one pseudonymised ones
    (qrclient.deid.marker). OptionError (one line) when they would mix."""
    from qrclient.deid.errors import DeidError

    try:
        if pseudonymize is not None:
            from qrclient.deid.session import open_pseudonymizing

            return open_pseudonymizing(store, pseudonymize)
        if to_us:
            from qrclient.deid.marker import refuse_plain

            refuse_plain(store.root)
    except DeidError as exc:
        raise OptionError(str(exc)) from None
    return None


def pseudonymized_note(sink: PseudonymizingStore) -> str:
    """What a pseudonymising retrieve did, for its summary."""
    what = f"pseudonymised on receive ({sink.pseudonymizer.dates.describe()})"
    if sink.linkage is None:
        return f"{what}; no linkage file kept (--linkage FILE keeps one)"
    return f"{what}; {sink.linkage.rows} rows added to the linkage file {sink.linkage.path}"

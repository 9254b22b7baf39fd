"""The scheduler's work units on a task queue: Procrastinate, in the ledger's PostgreSQL.

The ledger stays the source of truth (outcomes, records, leases and fencing); the
queue only says which work unit to run next, and where. Its jobs:

* ``callbridge.deliver(tenant, app)`` — a connection's due deliveries, claimed from
  the ledger under their leases and worked until none is due (or for
  ``workers.slice_seconds``, after which it queues its remainder). Its Procrastinate
  ``lock`` is the connection, so one worker at a time works a connection (its rate
  limit is then spent by one process); its ``queueing_lock`` keeps one job waiting
  per connection, however many times it is asked for;
* ``callbridge.wake(tenant, app)`` — a retry wake-up, deferred with ``schedule_at`` =
  the earliest ``next_attempt_at`` of the connection's waiting deliveries; it queues
  the connection's ``deliver``;
* periodic units, each with a queueing lock and a lock (one runs at a time across
  every worker): confirmation checks, the closed-matter poll, index syncs, digests,
  app-event subscriptions, and ``stalled`` (the jobs of a worker whose heartbeat
  stopped are retried; a killed worker's deliveries are claimed again once their
  ledger leases lapse);
* ``dispatch``, every second, by one worker of the fleet (the one holding a
  PostgreSQL advisory lock on a connection of its own; when it stops, its session
  ends and another takes it within a second), and by each worker as it starts: each
  connection with a due delivery and no ``deliver`` queued or running gets one
  (events stored by ``callbridge serve --no-worker``, deliveries requeued by an
  operator, retries whose time has come, leases of a dead worker run out). Not a
  periodic job: those are deferred by every worker each time and wake every worker.

Lost jobs lose no work: ``dispatch`` finds every due delivery in the ledger again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import procrastinate
import sqlalchemy as sa
from procrastinate import exceptions as pexc
from procrastinate.jobs import Status

from callbridge.closing import schedule as closing_schedule
from callbridge.ledger import tables as t
from callbridge.scheduler import EVICT_EVERY, INDEX_STALE_AFTER, InProcessScheduler

if TYPE_CHECKING:
    from callbridge.engine import Engine
    from callbridge.ledger import Ledger

log = logging.getLogger("callbridge.workers")

QUEUE = "callbridge"
DELIVER = "callbridge.deliver"
WAKE = "callbridge.wake"
#: The connections with a ``deliver`` job queued or running.
QUEUED = ("SELECT DISTINCT args->>'tenant' AS tenant, args->>'app_name' AS app "
          "FROM procrastinate_jobs WHERE queue_name = %(queue)s AND task_name = %(task)s "
          "AND status IN ('todo', 'doing')")
#: pg_advisory_lock key held while the queue's tables are made (one process does it).
SCHEMA_LOCK = 0x63616C6C62726467  # "callbrdg"
#: Periodic units: (name, cron with seconds as the 6th field).
PERIODIC = {
    "stalled": "* * * * * */5",
    "confirm": "* * * * * */15",
    "closed_matters": "* * * * * */30",
    "index_sync": "* * * * * 0",
    "digest": "* * * * * 30",
    "app_events": "* * * * * 45",
}
#: pg_advisory_lock key of the fleet's dispatcher ("cbdispat").
DISPATCH_LOCK = 0x6362646973706174
#: Seconds between dispatches.
DISPATCH_SECONDS = 1.0
#: Seconds between a worker's polls for jobs: new jobs wake every worker at once (LISTEN/
#: NOTIFY), and what comes due later (a retry's time) ``dispatch`` finds every second.
POLL_SECONDS = 5.0
#: Job slots kept for the periodic units beside ``workers.concurrency`` connections.
PERIODIC_SLOTS = 3


def conninfo(url: str) -> str:
    """The psycopg connection string of a ``postgresql+psycopg://`` ledger URL."""
    parsed = sa.engine.make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def build_app(url: str) -> procrastinate.App:
    """A Procrastinate app on the ledger's database, with callbridge's tasks."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=conninfo(url), min_size=1, max_size=8))

    def units(context: procrastinate.JobContext) -> Units:
        found: Units = context.additional_context["units"]
        return found

    @app.task(name=DELIVER, queue=QUEUE, pass_context=True)
    async def deliver(context: procrastinate.JobContext, tenant: str, app_name: str) -> int:
        return await units(context).deliver(tenant, app_name)

    @app.task(name=WAKE, queue=QUEUE, pass_context=True)
    async def wake(context: procrastinate.JobContext, tenant: str, app_name: str) -> None:
        await units(context).nudge(tenant, app_name)

    for name, cron in PERIODIC.items():
        task_name = f"callbridge.{name}"

        async def periodic(context: procrastinate.JobContext, timestamp: int,
                           _unit: str = name) -> None:
            await getattr(units(context), _unit)()

        app.periodic(cron=cron, periodic_id=name)(app.task(
            name=task_name, queue=QUEUE, pass_context=True, queueing_lock=task_name,
            lock=task_name)(periodic))
    return app


async def ensure_schema(app: procrastinate.App, url: str) -> None:
    """Make the queue's tables if missing, under an advisory lock (many workers start)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        try:
            row = await (await conn.execute("SELECT to_regclass('procrastinate_jobs')")).fetchone()
            if row is None or row[0] is None:
                await conn.execute(app.schema_manager.get_schema())
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))


def due_connections(ledger: Ledger, now: datetime) -> list[tuple[str, str]]:
    """Each (tenant, app) with a delivery due now and free (no live lease). Read without
    locking them: a claim running meanwhile must not find them taken."""
    if ledger._direct is not None:
        return ledger._direct.due_connections(now)
    due = ledger._due_query(now=now, limit=10**9, lock=False).subquery()
    with ledger._read() as conn:
        return [(r.tenant, r.app) for r in conn.execute(
            sa.select(due.c.tenant, due.c.app).distinct())]


def next_wake(ledger: Ledger, tenant: str, app: str) -> datetime | None:
    """The earliest ``next_attempt_at`` of the connection's waiting deliveries."""
    d = t.deliveries
    with ledger._read() as conn:
        found: datetime | None = conn.execute(sa.select(sa.func.min(d.c.next_attempt_at)).where(
            d.c.tenant == tenant, d.c.app == app, d.c.status == "waiting")).scalar()
    return found


class Units:
    """The work units' bodies, run by the queue's jobs in one worker process."""

    def __init__(self, engine: Engine, app: procrastinate.App, stop: asyncio.Event,
                 scheduler: QueueScheduler) -> None:
        self.engine = engine
        self.app = app
        self.stop = stop
        self.scheduler = scheduler
        #: Deliveries worked by this process (figures).
        self.worked = 0

    async def nudge(self, tenant: str, app_name: str) -> bool:
        """Queue the connection's ``deliver`` (False: one is waiting already)."""
        key = f"deliver:{tenant}:{app_name}"
        try:
            await self.app.configure_task(DELIVER, lock=key, queueing_lock=key).defer_async(
                tenant=tenant, app_name=app_name)
        except pexc.AlreadyEnqueued:
            return False
        return True

    async def deliver(self, tenant: str, app_name: str) -> int:
        engine = self.engine
        tenant_settings = engine.config.tenants.get(tenant)
        if tenant_settings is None or app_name not in tenant_settings.apps:
            return 0  # removed meanwhile; its deliveries are skipped by any claim
        sliced = asyncio.Event()
        loop = asyncio.get_running_loop()
        timer = loop.call_later(engine.config.workers.slice_seconds, sliced.set)
        relay = asyncio.create_task(self._relay(sliced))
        try:
            worked = await engine.worker.run_until_idle(
                tenant=tenant, apps=[app_name], stop=sliced,
                concurrency=engine.worker.slots_for(tenant, app_name))
        finally:
            timer.cancel()
            relay.cancel()
        self.worked += worked
        if self.stop.is_set():
            return worked  # the next worker's dispatch finds what is left
        if sliced.is_set():
            await self.nudge(tenant, app_name)  # more may be due: others go first meanwhile
        else:
            await self._schedule_wake(tenant, app_name)
        return worked

    async def _relay(self, sliced: asyncio.Event) -> None:
        await self.stop.wait()
        sliced.set()

    async def _schedule_wake(self, tenant: str, app_name: str) -> None:
        engine = self.engine
        when = await engine.db(next_wake, engine.ledger, tenant, app_name)
        if when is None:
            return
        if when <= engine.clock.now():
            await self.nudge(tenant, app_name)
            return
        with contextlib.suppress(pexc.AlreadyEnqueued):
            await self.app.configure_task(
                WAKE, schedule_at=when,
                queueing_lock=f"wake:{tenant}:{app_name}:{int(when.timestamp())}").defer_async(
                tenant=tenant, app_name=app_name)

    # --- periodic units ------------------------------------------------------------------

    async def dispatch(self) -> int:
        """Queue ``deliver`` for every connection with a due delivery and no ``deliver``
        queued or running (a running one works until none is due, and another could
        not start before it ends: its lock); how many were queued."""
        engine = self.engine
        pairs = await engine.db(due_connections, engine.ledger, engine.clock.now())
        if not pairs:
            return 0
        busy = {(r["tenant"], r["app"]) for r in await self.app.connector.execute_query_all_async(
            QUEUED, queue=QUEUE, task=DELIVER)}
        return sum([await self.nudge(tenant, app) for tenant, app in pairs
                    if (tenant, app) not in busy])

    async def stalled(self) -> int:
        """Retry the jobs of workers whose heartbeat stopped; how many."""
        manager = self.app.job_manager
        seconds = self.engine.config.workers.stalled_after_seconds
        jobs = list(await manager.get_stalled_jobs(seconds_since_heartbeat=seconds))
        for job in jobs:
            assert job.id is not None
            try:
                await manager.retry_job(job)
            except pexc.ConnectorException:
                # The same unit is queued already (its queueing lock): that one runs it.
                await manager.finish_job_by_id_async(job.id, Status.ABORTED, delete_job=True)
            log.warning("job %s (%s) of a stopped worker queued again", job.id, job.task_name)
        return len(jobs)

    async def confirm(self) -> int:
        return await self.engine.confirmer.run_due()

    async def closed_matters(self) -> int:
        return await closing_schedule.run_due(self.engine)

    async def index_sync(self) -> int:
        return await self.scheduler.sync_indexes(stale_after=INDEX_STALE_AFTER)

    async def digest(self) -> int:
        return await self.scheduler.digests()

    async def app_events(self) -> int:
        return await self.engine.app_events.run_due()


class QueueScheduler(InProcessScheduler):
    """The :class:`~callbridge.scheduler.Scheduler` whose work units are Procrastinate jobs;
    :meth:`run` is one worker of the fleet."""

    units: Units | None = None

    def __init__(self, engine: Engine, *, concurrency: int | None = None) -> None:
        super().__init__(engine)
        self.concurrency = concurrency

    async def run(self, stop: asyncio.Event) -> None:
        engine = self.engine
        settings = engine.config.workers
        url = engine.ledger.url
        app = build_app(url)
        await ensure_schema(app, url)
        async with app.open_async():
            self.units = units = Units(engine, app, stop, self)
            worker = asyncio.create_task(app.run_worker_async(
                queues=[QUEUE], name=engine.owner, concurrency=(self.concurrency or settings.concurrency) + PERIODIC_SLOTS,
                install_signal_handlers=False, additional_context={"units": units},
                update_heartbeat_interval=settings.heartbeat_seconds,
                stalled_worker_timeout=settings.stalled_after_seconds,
                delete_jobs="successful", fetch_job_polling_interval=POLL_SECONDS,
                abort_job_polling_interval=5.0), name="callbridge-queue-worker")
            try:
                dispatcher: asyncio.Task[None] | None = None
                await units.dispatch()  # what is due now, at once
                dispatcher = asyncio.create_task(self._dispatcher(units, stop, url),
                                                 name="callbridge-dispatch")
                stopped = asyncio.ensure_future(stop.wait())
                while not stop.is_set() and not worker.done():
                    await asyncio.wait({stopped, worker}, timeout=EVICT_EVERY,
                                       return_when=asyncio.FIRST_COMPLETED)
                    await engine.evict_idle()  # this process's clients and caches
                stopped.cancel()
            finally:
                for task in (t for t in (dispatcher, worker) if t is not None):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if worker.done() and not worker.cancelled() and worker.exception() is not None:
                raise worker.exception()  # type: ignore[misc]

    async def _dispatcher(self, units: Units, stop: asyncio.Event, url: str) -> None:
        """Dispatch every second while this worker holds the fleet's dispatch lock (a
        session lock on a connection of its own, held until the process stops; the
        others ask for it every second)."""
        import psycopg

        conn: psycopg.AsyncConnection[Any] | None = None
        held = False
        try:
            while not stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True)
                        held = False
                    if not held:
                        row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)",
                                                        (DISPATCH_LOCK,))).fetchone()
                        held = bool(row and row[0])
                    if held:
                        await units.dispatch()
                except Exception:  # the database away: tried again next time
                    log.warning("dispatch failed; tried again in %g s", DISPATCH_SECONDS,
                                exc_info=True)
                    if conn is not None:
                        await conn.close()
                    conn = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), DISPATCH_SECONDS)
        finally:
            if conn is not None:
                await conn.close()

    def wake(self) -> None:
        """Work was queued outside the worker: ``dispatch`` finds it within a second."""

    @property
    def worked(self) -> int:
        return self.units.worked if self.units is not None else 0

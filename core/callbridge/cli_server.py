"""The ``callbridge`` commands of a long-running deployment: ``serve``, ``worker``,
``tenants``, ``operator-token`` and ``connect-link`` (typer wrappers only; each body is
imported when its command runs, as in :mod:`callbridge.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from callbridge.cli_options import ConfigOpt, JsonOpt
from callbridge.commands import fail as _fail
from callbridge.commands import runtime as _runtime
from callbridge.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""

    @app.command()
    def serve(
        config: ConfigOpt = None,
        host: Annotated[str | None, typer.Option(help="address to listen on (default: serve.host)")] = None,
        port: Annotated[int | None, typer.Option(
            min=0, max=65535, help="port (default: serve.port; 0: a free one, printed)")] = None,
        no_worker: Annotated[bool, typer.Option(
            "--no-worker", help="intake only: store events, leave the logging to other processes")] = False,
    ) -> None:
        """Receive events over HTTP (signed webhooks from phone systems) and log them, with the
        worker and the scheduler in the same process. Stops gracefully on SIGTERM or Ctrl-C."""
        from callbridge.serve import EXTRA_HINT, missing_libraries

        if missing_libraries():
            raise _fail(f"{EXTRA_HINT} (missing: {', '.join(missing_libraries())})")
        from callbridge.serve.server import run

        try:
            code = run(config, host=host, port=port, worker=not no_worker)
        except ConfigError as exc:
            raise _fail(str(exc), 2) from None
        except OSError as exc:
            raise _fail(f"cannot listen on the address ({exc.strerror})") from None
        raise typer.Exit(code)


    @app.command()
    def worker(config: ConfigOpt = None, concurrency: Annotated[int | None, typer.Option(
            min=1, max=1000, help="connections worked at once (default: workers.concurrency)")] = None,
    ) -> None:
        """Log deliveries, beside `serve --no-worker` and other workers on one or many machines
        (on a PostgreSQL ledger, through a task queue in it). Stops gracefully on SIGTERM."""
        from callbridge.workers.command import main

        main(config, concurrency)


    @app.command("operator-token")
    def operator_token(name: Annotated[str, typer.Argument(help="the operator's name in the settings")],
                       tenant: Annotated[list[str] | None, typer.Option(help="a tenant it may act "
                                         "for (repeat it); none: every tenant")] = None) -> None:
        """Make a bearer token for the operator API, and the settings lines that admit it."""
        from callbridge.serve.tokens import print_token

        print_token(name, tenant)


    @app.command("connect-link")
    def connect_link(app_name: Annotated[str, typer.Argument(metavar="APP")],
                     tenant: Annotated[str, typer.Option(help="the firm whose administrator connects it")],
                     valid_minutes: Annotated[int, typer.Option(min=1, max=10080)] = 60, config: ConfigOpt = None) -> None:
        """Print a link for a firm's administrator to connect an app through `callbridge serve`."""
        from callbridge.serve.links import print_link

        print_link(_runtime(config), app_name, tenant, valid_minutes)


    tenants_app = typer.Typer(no_args_is_help=True,
                              help="The firms of a tenants directory (tenants_dir): list, add, change, remove.")
    app.add_typer(tenants_app, name="tenants")


    @tenants_app.command("list")
    def tenants_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
        """Every configured tenant and its apps."""
        from callbridge.commands import tenants

        tenants.list_(config, as_json)


    @tenants_app.command("add")
    def tenants_add(
        key: Annotated[str, typer.Argument(help="the tenant's key (its file is KEY.toml)")],
        file: Annotated[Path, typer.Argument(help="the tenant's settings: the keys of a [tenants.KEY] table")],
        replace: Annotated[bool, typer.Option("--replace", help="change an existing tenant")] = False,
        config: ConfigOpt = None,
    ) -> None:
        """Check a tenant's settings file and put it in the tenants directory."""
        from callbridge.commands import tenants

        tenants.add(config, key, file, replace)


    @tenants_app.command("remove")
    def tenants_remove(key: Annotated[str, typer.Argument()], config: ConfigOpt = None) -> None:
        """Remove a tenant's file from the tenants directory (its ledger data stays)."""
        from callbridge.commands import tenants

        tenants.remove(config, key)

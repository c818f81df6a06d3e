"""The `ctax` command line: the outermost layer. It may start the API and the worker by import string.

One module per command group; this one puts them together in the order `ctax --help` lists them."""

from __future__ import annotations

import typer

from ctax.cli import admin, configuration, data, evaluate, models, service
from ctax.cli.common import say_errors
from ctax.errors import CtaxError

app = typer.Typer(help="ctax: label ad creatives with taxonomy paths.", no_args_is_help=True)
app.command()(service.api)
app.command()(service.worker)
app.command()(service.run)
app.command()(models.train)
app.command("eval")(evaluate.evaluate)
app.add_typer(admin.db_app, name="db")
app.add_typer(data.labels_app, name="labels")
app.add_typer(data.creatives_app, name="creatives")
app.add_typer(admin.accounts_app, name="accounts")
app.add_typer(admin.keys_app, name="keys")
app.add_typer(models.models_app, name="models")
app.add_typer(data.proposals_app, name="proposals")
app.command()(admin.jobs)
app.command("settings")(configuration.show)


def main() -> None:
    """`ctax`: a domain error a command did not handle itself (the database out of reach or unmigrated, a missing
    version) ends it with one line and exit status 2, as a bad setting does; a bug still shows its traceback."""
    try:
        app()
    except CtaxError as exc:
        say_errors([exc.message])
        raise SystemExit(2) from None


__all__ = ["app", "main"]

"""`taskloom model path`: the GGUF file the local model loads."""

from __future__ import annotations

import click

from taskloom.cli.app import cli
from taskloom.cli.common import settings_from


@cli.group()
def model() -> None:
    """The GGUF model that workers and local runs load (docs/models.md)."""


@model.command("path")
@click.option("--model", "name", metavar="PATH", help="A model file to check (TASKLOOM_MODEL).")
def path(name: str | None) -> None:
    """Print the model's file: --model or TASKLOOM_MODEL when set, else the default's."""
    from taskloom.api.model import model_path

    click.echo(str(model_path(settings_from(model=name))))

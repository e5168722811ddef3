"""The `taskloom` command group, its entry point, and the only logging configuration.

Exit codes: 0 success, 1 the run failed, 2 usage or validation error, 3 infrastructure
unavailable, 70 an internal error (a bug in taskloom), 75 the run is still running (`result`
without --wait, or its --timeout ran out). An error is one line on stderr; `--debug` adds
the traceback. The numbers 70 and 75 are sysexits' EX_SOFTWARE and EX_TEMPFAIL.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any, TextIO, cast

import click
import structlog

from taskloom.errors import TaskloomError

EXIT_INTERNAL_ERROR = 70
EXIT_STILL_RUNNING = 75


def configure_logging(*, verbose: int, is_json: bool) -> None:
    """Human-readable logs on stderr, JSON lines with --log-json; warnings only by default.

    taskloom's loggers go through `logging` (see `taskloom.logs`); this gives the
    `taskloom` logger its one handler, rendered by structlog.
    """
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if is_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    handler = logging.StreamHandler(cast(TextIO, _Stderr()))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso"),
                renderer,
            ],
        )
    )
    logger = logging.getLogger("taskloom")
    logger.handlers = [h for h in logger.handlers if not isinstance(h, logging.StreamHandler)]
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING - 10 * min(verbose, 2))
    logger.propagate = False


def show_worker_lifecycle() -> None:
    """Let a worker process log its lifecycle at INFO even by default (WARNING): the
    line that says it is ready (model, queues, concurrency, device), draining, stopped,
    a supervisor's children, and jobs put back or cancelled; never a line per step."""
    logger = logging.getLogger("taskloom.workers")
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)


class _Stderr:
    """Whatever sys.stderr is at the time of writing (loggers are cached; stderr may not be)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taskloom", prog_name="taskloom")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("--log-json", is_flag=True, help="Log JSON lines to stderr.")
@click.option("-v", "--verbose", count=True, help="More logs (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_json: bool, verbose: int) -> None:
    """taskloom: a large model plans, small models execute."""
    configure_logging(verbose=verbose, is_json=log_json)
    ctx.obj = {"debug": debug}


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning errors into one line and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="taskloom", standalone_mode=False)
        sys.exit(0)
    except TaskloomError as e:
        if debug:
            traceback.print_exc()
        click.echo(f"taskloom: error: {one_line(str(e))}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("taskloom: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"taskloom: error: {e.format_message()}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("taskloom: interrupted; resume with taskloom resume RUN_ID", err=True)
        sys.exit(130)
    except Exception as e:  # a bug in taskloom: still one line, unless --debug
        if debug:
            traceback.print_exc()
        click.echo(
            f"taskloom: internal error: {type(e).__name__}: {one_line(str(e))} "
            "(rerun with --debug and report it)",
            err=True,
        )
        sys.exit(EXIT_INTERNAL_ERROR)


def one_line(text: str) -> str:
    """Collapse a message onto one line."""
    return " ".join(text.split())

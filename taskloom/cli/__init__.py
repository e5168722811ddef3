"""The `taskloom` CLI: calls library functions and maps errors to exit codes.

`app` holds the command group, the entry point and the logging set-up; `local`,
`goal` and `remote` hold the commands; `common` what they share. Heavy modules
(LangGraph, llama.cpp) are imported inside the commands that need them.
"""

from taskloom.cli import evaluate, goal, local, model, remote, review  # noqa: F401  (registers commands)
from taskloom.cli.app import cli, configure_logging, main, one_line

__all__ = ["cli", "configure_logging", "main", "one_line"]

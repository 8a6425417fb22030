"""The ``remoteops`` command line: a thin Typer layer over the library.

This package is the only part of remoteops that prints or exits. Commands parse
their arguments, call the library, render what comes back and map errors to the
exit codes of docs/exit-codes.md.

Layout (each module imports only those above it, never a cycle):

- ``findings``: what an analysis adds to a run's output, summary and exit code;
- ``runtime``: exit codes, consoles, ``-q``, interrupts, progress, finishing a run;
- ``options``: the shared options and targeting (hosts, targets, Executor);
- ``analyze``, ``run``, ``transfer``, ``play``, ``inventory``, ``lab``, ``help``,
  ``completion``, ``config_cmd``, ``history_cmd`` (``history`` and ``report``): one
  command group each;
- ``app``: the Typer app assembled from them, the global options, :func:`main`
  and :func:`console_main` (the ``remoteops`` entry point).
"""

from __future__ import annotations

from remoteops.cli.app import app, console_main, main

__all__ = ["app", "console_main", "main"]

"""``python -m remoteops``: the same as the ``remoteops`` command."""

from __future__ import annotations

from remoteops.cli import console_main

if __name__ == "__main__":
    console_main()

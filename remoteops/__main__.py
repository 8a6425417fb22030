"""``python -m remoteops``: the same as the ``remoteops`` command."""

from __future__ import annotations

from remoteops.cli import main

if __name__ == "__main__":
    main()

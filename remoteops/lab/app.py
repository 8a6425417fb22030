"""The sample application every isolated lab host ships, so that the example
playbooks have something to audit and collect on a fresh lab.

``lab up`` (as root) writes into each host's private ``/srv``, owned by the
login user as a deployed application's files would be:

* ``/srv/app/VERSION``: ``2.4.1``, except on ``db01``, which still runs
  ``2.4.0`` (one host drifting, for ``playbooks/version-audit.yml``);
* ``/srv/app/log/app.log``: a short log from the last hour with INFO lines, one
  WARN and 0, 1 or 2 ERROR lines (the first, fourth, seventh... host has none),
  two messages shared across hosts (for ``playbooks/collect-logs.yml``).

Nothing here depends on the host's address or keys: the same layout always
gives the same files, apart from the log's times.
"""

from __future__ import annotations

import time

__all__ = ["APP_DIR", "BEHIND_HOST", "BEHIND_VERSION", "FLEET_VERSION", "app_files"]

APP_DIR = "/srv/app"
FLEET_VERSION = "2.4.1"
BEHIND_HOST = "db01"
BEHIND_VERSION = "2.4.0"

# (seconds after the log starts, level, message); ERROR lines are added per host.
_LOG_LINES = (
    (0, "INFO", "app {version} started on {host} with 4 workers"),
    (1, "INFO", "listening on 0.0.0.0:8080"),
    (95, "INFO", "GET /health 200 in 3 ms"),
    (412, "WARN", "slow request: GET /api/orders took 1840 ms"),
    (2900, "INFO", "GET /health 200 in 2 ms"),
)
_ERROR_LINES = (
    (415, "ERROR", "upstream 10.0.3.7:5432 timed out after 30 s"),
    (1733, "ERROR", "payment gateway returned 502 for order 1187"),
)


def app_files(host: str, index: int, now: float) -> dict[str, str]:
    """Remote path -> text of the sample app's files on lab host ``host``.

    ``index`` is the host's place in the lab (0 for the first host): host
    ``index`` logs ``index % 3`` ERROR lines. ``now`` (seconds since the epoch)
    ends the hour the log covers.
    """
    version = BEHIND_VERSION if host == BEHIND_HOST else FLEET_VERSION
    lines = sorted((*_LOG_LINES, *_ERROR_LINES[: index % 3]))
    start = int(now) - 3600 + index
    log = "".join(
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(start + offset))} {level} "
        f"{message.format(version=version, host=host)}\n"
        for offset, level, message in lines
    )
    return {f"{APP_DIR}/VERSION": version + "\n", f"{APP_DIR}/log/app.log": log}

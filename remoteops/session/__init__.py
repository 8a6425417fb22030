"""SSH sessions: one paramiko transport per host, leased by one worker at a time.

The package, by concern:

- ``watchdog``: the one thread that enforces per-host deadlines;
- ``credentials``: keys, passphrases, the ssh-agent and passwords of a run;
- ``errors``: paramiko and socket errors mapped to remoteops' ``HostError``
  classes (the only place that maps paramiko's errors), among them a
  session channel that never opened (``NOTHING_RAN_ERRORS``: nothing ran);
- ``transport``: paramiko's Transport and authentication as remoteops runs
  them, and the private paramiko calls (checked at import by
  ``remoteops.fastpaths``);
- ``connection``: ``connect()``: TCP or proxy, key exchange, host key
  check, authentication, under the connect deadline and Ctrl-C (not named
  ``connect``: the function of that name is re-exported here);
- ``channel``: what a command's channel is read into (capped output, lines,
  sudo's prompt, the keepalive check);
- ``session``: the ``Session`` class, the exec loop and the stop helper.

The names below are the package's interface; import them from here.
"""

from __future__ import annotations

from remoteops.session.channel import (
    DEFAULT_MAX_OUTPUT,
    CommandOutput,
    ExecResult,
    LineSink,
    PromptAnswer,
)
from remoteops.session.connection import SessionSettings, connect, host_key_policy_for
from remoteops.session.credentials import Credentials
from remoteops.session.errors import (
    NOTHING_RAN_ERRORS,
    ChannelRefusedError,
    ChannelTimeoutError,
    SessionClosedError,
    map_errors,
)
from remoteops.session.session import (
    DEFAULT_KEEPALIVE_COUNT,
    DEFAULT_KEEPALIVE_INTERVAL,
    Session,
)
from remoteops.session.watchdog import Watchdog

__all__ = [
    "DEFAULT_KEEPALIVE_COUNT",
    "DEFAULT_KEEPALIVE_INTERVAL",
    "DEFAULT_MAX_OUTPUT",
    "NOTHING_RAN_ERRORS",
    "ChannelRefusedError",
    "ChannelTimeoutError",
    "CommandOutput",
    "Credentials",
    "ExecResult",
    "LineSink",
    "PromptAnswer",
    "Session",
    "SessionClosedError",
    "SessionSettings",
    "Watchdog",
    "connect",
    "host_key_policy_for",
    "map_errors",
]

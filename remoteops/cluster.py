"""A Dask distributed cluster to work on: ``--cluster ADDRESS`` (docs/cluster.md).

``distributed`` is an optional extra (``pip install 'remoteops[dask]'``); it is
imported only when a command is given a cluster, and without it the command
says how to install it (exit 2). :func:`connect` checks the address, connects
to the scheduler within a bounded time and waits (as long again) for a worker;
a scheduler that cannot be reached is one line, exit 2, before any work starts.

What travels to the scheduler and the workers: today only analysis tasks
(``remoteops analyze --cluster``): the analyzer's name and its checked
arguments, and the bytes of the document (a host's output, or a byte range of
a file of at most the stage's chunk size, carried in the task because a worker
on another machine cannot read the client's paths). Never a private key, a
passphrase, a password, a become password, an inventory or an SSH connection.
The workers run the analyzers (built-ins, and a ``module:function`` plugin only
if the worker can import it), so they need remoteops installed, the same
version as the client.

A ``tls://`` address uses Dask's own TLS settings (``distributed.comm.tls.*``
in its config files or ``DASK_DISTRIBUTED__COMM__TLS__...`` variables); over
``tcp://`` anything on the network between client and cluster can read the
documents, so keep it to trusted networks.
"""

from __future__ import annotations

import ipaddress
import logging
from types import ModuleType
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from remoteops.errors import UsageError

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "CLUSTER_ENV",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "INSTALL_HINT",
    "check_address",
    "check_timeout",
    "close",
    "connect",
    "require_distributed",
]

logger = logging.getLogger(__name__)

CLUSTER_ENV: Final = "REMOTEOPS_CLUSTER"
DEFAULT_PORT: Final = 8786  # dask scheduler's
DEFAULT_TIMEOUT: Final = 10.0
SCHEMES: Final = ("tcp", "tls")
INSTALL_HINT: Final = (
    "--cluster needs Dask distributed, which is not installed: pip install 'remoteops[dask]'"
)


def require_distributed() -> ModuleType:
    """The ``distributed`` package, or ``UsageError`` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    _log_to_file_only()
    return distributed


def _log_to_file_only() -> None:
    """Dask's own log lines go to remoteops' log file, not to stderr.

    ``distributed`` gives its loggers (and tornado's, bokeh's) a stderr handler
    of their own; remoteops says what went wrong in its own one line, and the
    details go to the log.
    """
    names = [
        name
        for name in list(logging.root.manager.loggerDict)
        if name.split(".")[0] in ("distributed", "dask", "tornado", "bokeh")
    ]
    for name in names:
        dask_logger = logging.getLogger(name)
        for handler in list(dask_logger.handlers):
            dask_logger.removeHandler(handler)
        dask_logger.propagate = False
        for handler in logging.getLogger("remoteops").handlers:
            if getattr(handler, "baseFilename", None):
                dask_logger.addHandler(handler)
        if not dask_logger.handlers:
            dask_logger.addHandler(logging.NullHandler())


def check_address(address: str) -> str:
    """``address`` as ``SCHEME://HOST:PORT``: ``tcp://`` when no scheme is given, port
    8786 when none is; ``UsageError`` for anything else."""
    text = address.strip()
    hint = (
        f"--cluster {address!r}: not a Dask scheduler address; give tcp://HOST:PORT "
        "or tls://HOST:PORT (dask scheduler prints it)"
    )
    if not text or any(c.isspace() for c in text):
        raise UsageError(hint)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    if scheme.lower() not in SCHEMES:
        raise UsageError(f"{hint}; {scheme}:// is not supported")
    try:
        parts = urlsplit(f"{scheme.lower()}://{rest}")
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise UsageError(hint) from None
    host = parts.hostname
    if not host or parts.path or parts.query or parts.fragment or parts.username:
        raise UsageError(hint)
    try:
        shown = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        shown = host
    return f"{parts.scheme}://{shown}:{port}"


def check_timeout(timeout: float) -> None:
    """``UsageError`` unless ``timeout`` (``--cluster-timeout``) is more than 0 seconds."""
    if not timeout > 0:
        raise UsageError("--cluster-timeout must be more than 0 seconds")


def connect(address: str, *, timeout: float = DEFAULT_TIMEOUT) -> Client:
    """A client of the scheduler at ``address`` that has at least one worker.

    Bounded: ``timeout`` seconds to connect, as long again for a worker to join;
    then one :class:`UsageError` line (exit 2). The caller closes the client.
    """
    check_timeout(timeout)
    target = check_address(address)
    distributed = require_distributed()
    try:
        client: Client = distributed.Client(
            target, timeout=timeout, set_as_default=False, name="remoteops"
        )
    except TypeError as exc:  # tls:// without Dask's TLS settings
        logger.debug("cluster %s: %r", target, exc)
        raise UsageError(
            f"--cluster {target}: tls:// needs Dask's TLS settings (distributed.comm.tls.ca-file, "
            ".client.cert and .client.key in Dask's config); see: remoteops help cluster"
        ) from None
    except (OSError, TimeoutError) as exc:
        logger.debug("cluster %s: %r", target, exc)
        raise UsageError(
            f"--cluster {target}: no Dask scheduler answered within {timeout:g} s; start one "
            "('dask scheduler') or check the address"
        ) from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        logger.debug("cluster %s: %r", target, exc)
        close(client)
        raise UsageError(
            f"--cluster {target}: the scheduler has no worker (waited {timeout:g} s); start "
            f"some ('dask worker {target}')"
        ) from None
    logger.info("cluster %s: %d workers", target, len(client.nthreads()))
    return client


def close(client: Client) -> None:
    """Close ``client`` (bounded; a scheduler already gone is not an error)."""
    try:
        client.close(timeout=5)
    except Exception as exc:  # the scheduler went away meanwhile
        logger.debug("closing the cluster client: %r", exc)

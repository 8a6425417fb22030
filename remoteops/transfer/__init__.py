"""SFTP put/get on leased sessions: atomic, verified, idempotent and pipelined.

``put`` uploads a ``SourceSet`` (local files scanned and read once in the main
thread, shared read-only by every host) and ``get`` downloads into
``LOCAL_DIR/<host>/<remote path>``. Both are per-host operations (``Put``,
``Get``: ``on(session)`` works on one host's open session, which stays open)
that the ``Executor`` fans out over its session pool, one connection per
host; ``put``/``get`` yield a ``HostResult`` per host with the extra JSON
fields ``files`` (sent), ``unchanged``, ``failed_files``, ``bytes``, ``changed``
and ``skipped`` (symlinks and special files left alone).

Nothing is lost: every file is written under a temporary name in its
destination directory (``.NAME.remoteops-<random>.part``; ``.NAME.remoteops.part``
with ``resume``) and renamed into place only once its size (and, with
``verify``, its sha256) is checked. On any error, Ctrl-C or deadline the
temporary files are removed, over a fresh connection if the old one is gone,
unless ``resume`` asks to keep them for the next run.

What is unchanged (rsync's quick check): a copy with exactly the source's size
and modification time, compared in whole seconds (SFTP version 3 carries no
more); every copy, sent or fetched, is stamped with its source's mtime (as
``rsync -t`` does), so a second run sends nothing, while a rollback (an older
time) or an edit is sent. ``checksum`` and ``verify`` decide by sha256 instead,
never by times, and stamp the source's mtime on a copy whose content matched.
``preserve`` sets the source's access time too.

Speed: paramiko sends one SFTP request and waits for its answer. Here a
``_Pipe`` keeps many requests in flight on the session's one SFTP channel
(OpenSSH's sftp-server answers them in order): stats, opens, 64 KiB reads and
writes, closes and renames of up to ``_BATCH`` files cost a few round trips in
all, and a large file streams with ``_WINDOW`` requests outstanding.

As another user (``become``, or the host's ``ansible_become``): the host's
SFTP, commands and streams go through ``become.SudoSession`` (``sftp-server``
and the fast paths run under sudo), with every guarantee above. A file that
replaces an existing one gets that file's owner and group back where the
writing user may set them; a new one belongs to the writing user.

Errors name the path the user asked for (``remote /etc/motd: Permission
denied``), never a temporary name, so the same failure on many hosts folds
into one line of the summary.

Safety of ``get``: every name a server sends goes through ``safe_local_path``
(no ``..``, ``/``, ``\\``, empty names or control characters); remote symlinks
inside a requested tree or matched by a glob are skipped with a warning, never
followed (a path named on the command line is followed, as ``cp`` does);
local directories are created and opened one component at a time with
``O_NOFOLLOW`` relative to their parent's descriptor, so a symlink planted
under ``LOCAL_DIR/<host>/`` is never written through; setuid, setgid and
sticky bits are dropped.

The package, by concern (lower modules never import higher ones):

* ``model``: options, the progress callback, limits, name checks, file times;
* ``sources``: ``SourceSet``, the local files ``put`` sends;
* ``sftp``: the ``_Pipe`` and what it asks of remote files;
* ``hostwork``: ``HostTransfer``, one host's transfer: counters, result,
  deadline and cleanup;
* ``files``: the files in flight, and get's ``O_NOFOLLOW`` local tree;
* ``streams``: the fast paths (listings, tar and cat streams, with ``bulk``);
* ``put``, ``get``: the two operations, choosing a path per host;
* ``staging``: files over a cluster: put's sources packed for the workers,
  get's files streamed back to the client's ``LOCAL_DIR/<host>/``.
"""

from __future__ import annotations

from remoteops.transfer.get import Get, get
from remoteops.transfer.model import (
    GetOptions,
    ProgressSink,
    PutOptions,
    TransferOptions,
    safe_local_path,
)
from remoteops.transfer.put import Put, put
from remoteops.transfer.sources import DEFAULT_MEMORY_BUDGET, SourceFile, SourceSet

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "Get",
    "GetOptions",
    "ProgressSink",
    "Put",
    "PutOptions",
    "SourceFile",
    "SourceSet",
    "TransferOptions",
    "get",
    "put",
    "safe_local_path",
]

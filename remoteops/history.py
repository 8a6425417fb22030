"""Run history: every run and each host's result, kept in SQLite (docs/history.md).

The store is one file, ``$XDG_STATE_HOME/remoteops/history.sqlite3`` (mode
0600 in a 0700 directory), in WAL mode with a busy timeout, so runs that
overlap in several processes all land. The CLI uses it so::

    store = HistoryStore()                            # default_path(); nothing opened yet
    recorder = store.start_run(command="run", argv=sys.argv, pattern="web",
                               inventory="inv.yml", max_output=1 << 20)
    for result in executor.run_command(spec):
        recorder.host(result)                         # thread-safe, written at once
    recorder.finish(exit_code, duration_s)

Recording never stops a run: the first error (an unwritable file, a full
disk, a lock held too long) is one ``remoteops: warning:`` line, and the
recorder does nothing more. A run whose process dies before ``finish`` stays
in the file; queries show it as ``incomplete``.

Queries (``history list|show|diff|hosts|prune``) raise :class:`HistoryError`
(exit 1) with one line naming the file when it cannot be read.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import re
import socket
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from remoteops.errors import RemoteOpsError, UsageError
from remoteops.exitcodes import ExitCode
from remoteops.results import JSON_VERSION, STATUSES, HostResult

__all__ = [
    "DEFAULT_MAX_AGE_S",
    "DEFAULT_MAX_SIZE",
    "SCHEMA_VERSION",
    "HistoryError",
    "HistoryStore",
    "HostDiff",
    "PruneResult",
    "Recorder",
    "RunDetail",
    "RunDiff",
    "RunInfo",
    "RunStatus",
    "default_history_path",
    "default_job",
    "parse_age",
    "parse_since",
    "parse_size",
    "redact_argv",
    "render_runs",
    "status_words",
]

log = logging.getLogger(__name__)

#: Retention defaults (``history prune`` without options, and the config's defaults).
DEFAULT_MAX_AGE_S: Final = 90 * 24 * 3600
DEFAULT_MAX_SIZE: Final = 256 * 1024 * 1024
#: How long a write waits for another process's write before it gives up.
BUSY_TIMEOUT_S: Final = 30.0

RunStatus = Literal["ok", "failed", "running", "incomplete"]
RUN_STATUSES: Final[tuple[RunStatus, ...]] = ("ok", "failed", "running", "incomplete")


class HistoryError(RemoteOpsError):
    """The history file cannot be read or written (exit 1)."""


# --------------------------------------------------------------------------- schema

#: Each migration takes the file from version N-1 to N (index N-1), in one transaction.
#: Never edit one that has shipped: add the next.
MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: runs and their hosts.
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started REAL NOT NULL,
        ended REAL,
        command TEXT NOT NULL,
        argv TEXT NOT NULL,
        user TEXT NOT NULL,
        inventory TEXT,
        pattern TEXT,
        exit_code INTEGER,
        duration_s REAL,
        machine TEXT NOT NULL,
        pid INTEGER NOT NULL
    );
    CREATE TABLE hosts (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        host TEXT NOT NULL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        duration_s REAL NOT NULL,
        error TEXT,
        record TEXT NOT NULL,
        stdout BLOB NOT NULL,
        stderr BLOB NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE INDEX runs_command_pattern ON runs (command, pattern, id);
    """,
    # 2: job names (metrics' last success per job; `--job NAME`), the --max-output kept, and
    # the process's boot id and start time, so a reused PID is not taken for a live run.
    """
    ALTER TABLE runs ADD COLUMN job TEXT;
    ALTER TABLE runs ADD COLUMN max_output INTEGER;
    ALTER TABLE runs ADD COLUMN process TEXT;
    UPDATE runs SET job = command || CASE WHEN pattern IS NULL THEN '' ELSE ' ' || pattern END;
    CREATE INDEX runs_job ON runs (job, id);
    CREATE INDEX runs_started ON runs (started);
    """,
    # 3: the run's analysis records (--analyze, --rules), for `history show` and `report`.
    """
    CREATE TABLE analysis (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def _version(db: sqlite3.Connection) -> int:
    try:
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    return int(row[0] or 0)


def _wal(db: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode, waiting up to ``timeout`` for other processes.

    Two processes that open a new file at once (cron jobs starting on the same
    second) both ask for WAL mode; the change needs the file to themselves, and
    SQLite answers "database is locked" at once, without its busy handler, to one
    of them. That one asks again until the other is done: once the file is in WAL
    mode, asking is a read of its header.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.02)


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to SCHEMA_VERSION; each step and its version number commit together.

    A file already current is only read (no write lock), so queries work on a
    file this user may only read.
    """
    version = _version(db)
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise HistoryError(
            f"{path}: history schema version {version} is newer than this remoteops "
            f"knows ({SCHEMA_VERSION}); upgrade remoteops or use --no-history"
        )
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = _version(db)  # another process may have migrated meanwhile
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _statements(MIGRATIONS[number - 1]):
                db.execute(statement)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite rolls back on its own after some errors (a full disk)
            db.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """A migration's statements (executescript would commit on its own)."""
    return [s.strip() for s in script.split(";") if s.strip()]


# --------------------------------------------------------------------------- paths


def default_history_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/remoteops/history.sqlite3`` (``~/.local/state`` by default)."""
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "remoteops" / "history.sqlite3"


def default_job(command: str, pattern: str | None) -> str:
    """The job name a run gets without ``--job``: ``run web``, ``ping all``."""
    return f"{command} {pattern}" if pattern else command


# --------------------------------------------------------------------------- option values


def parse_age(text: str, *, option: str = "--max-age") -> float:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` (a bare number is days) as seconds:
    the config's ``[history] max-age`` read the same way."""
    from remoteops.config import parse_age as parse

    try:
        return parse(text)
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: give a number and a unit: 90d, 12h, 30m, 2w"
        ) from None


def parse_size(text: str, *, option: str = "--max-size") -> int:
    """``256M``, ``1G``, ``500k``, ``1048576`` (bytes; K, M, G, T are powers of 1024): the
    config's ``[history] max-size`` read the same way."""
    from remoteops.config import parse_size as parse

    try:
        return parse(text)
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: give a size: 256M, 1G, 500k or a number of bytes"
        ) from None


def parse_since(text: str, *, now: float | None = None) -> float:
    """``--since``: an age (``2d``, ``12h``: that long ago) or a date or time in ISO 8601
    (``2026-12-01``, ``2026-12-01T06:00``; local time unless it names its zone)."""
    now = time.time() if now is None else now
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*[smhdw]\s*", text.lower()):
        return now - parse_age(text, option="--since")
    return _iso_time(text)


def _iso_time(text: str) -> float:
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UsageError(
            f"--since {text!r}: give an age (2d, 12h) or a date (2026-12-01, 2026-12-01T06:00)"
        ) from None


# --------------------------------------------------------------------------- redaction

REDACTED: Final = "(hidden)"

#: A name means a secret when, lowercased and without ``-`` and ``_``, it ends with one of these.
_SECRET_SUFFIXES: Final = (
    "password",
    "passwd",
    "pass",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "credential",
    "credentials",
    "auth",
    "authorization",
    "cookie",
)
_MYSQL: Final = ("mysql", "mariadb", "mysqldump", "mysqladmin", "mysqlcheck", "mysqlimport")
#: Clients whose options carry a password though their names do not say so, and how:
#: "glued" (``-pSECRET`` only: MySQL's ``-p`` alone prompts), "value" (glued or the next
#: word), "userinfo" (``USER:PASSWORD``, glued or the next word: the user is kept).
_CLIENT_OPTIONS: Final[dict[str, dict[str, str]]] = {
    **{name: {"-p": "glued"} for name in (*_MYSQL, "mariadb-dump")},
    "sshpass": {"-p": "value"},
    "curl": {"-u": "userinfo", "--user": "userinfo", "--proxy-user": "userinfo"},
}
_WORD: Final = re.compile(r"""(?:[^\s'"]+|'[^']*'|"[^"]*")+""")
_OPTION: Final = re.compile(r"(-{1,2}[A-Za-z][\w.-]*)(?:=(.*))?", re.S)
_ASSIGNMENT: Final = re.compile(r"([A-Za-z_][\w.-]*)=(.*)", re.S)
_URL_USERINFO: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*):([^\s/@]*)@")
#: ``"name": value`` / ``name: value`` inside inline JSON or YAML (``--extra-vars '{...}'``).
_MAPPING_ENTRY: Final = re.compile(
    r"""(["']?)([A-Za-z_][\w.-]*)\1(\s*:\s*)("[^"]*"|'[^']*'|[^\s,}\]]+)"""
)
#: remoteops' own flags whose names look secret but take no value.
_FLAGS: Final = frozenset({"--ask-pass"})


def _secret_name(name: str) -> bool:
    flat = name.lower().lstrip("-").replace("-", "").replace("_", "")
    return flat.endswith(_SECRET_SUFFIXES)


@dataclass(slots=True)
class _RedactState:
    pending: str | None = None  # how to hide this word: the previous one was its option
    client: str | None = None  # the last client of _CLIENT_OPTIONS named


def _hide(kind: str, value: str) -> str:
    if kind == "userinfo":
        user, colon, _password = value.partition(":")
        return f"{user}:{REDACTED}" if colon else value
    return REDACTED


def _client_option(word: str, state: _RedactState) -> str | None:
    """``word`` with a client's password hidden, or None when it is not such an option."""
    options = _CLIENT_OPTIONS.get(state.client or "", {})
    name, equals, value = word.partition("=")
    if equals and name.startswith("--") and name in options:
        return f"{name}={_hide(options[name], value)}"
    if word in options and options[word] != "glued":
        state.pending = options[word]
        return word
    for option, kind in options.items():
        if len(option) == 2 and word.startswith(option) and len(word) > 2:
            return option + _hide(kind, word[2:])
    return None


def _redact_word(word: str, state: _RedactState) -> str:
    if state.pending is not None:
        kind, state.pending = state.pending, None
        if not word.startswith("-"):
            return _hide(kind, word)
    word = _URL_USERINFO.sub(rf"\1:{REDACTED}@", word)
    base = word.rsplit("/", 1)[-1]
    if base in _CLIENT_OPTIONS:
        state.client = base
    hidden = _client_option(word, state)
    if hidden is not None:
        return hidden
    option = _OPTION.fullmatch(word)
    if option and _secret_name(option.group(1)) and option.group(1) not in _FLAGS:
        if option.group(2) is None:
            state.pending = "secret"
            return word
        return f"{option.group(1)}={REDACTED}"
    assignment = _ASSIGNMENT.fullmatch(word)
    if assignment and not option and _secret_name(assignment.group(1)):
        return f"{assignment.group(1)}={REDACTED}"
    return word


def _redact_entry(match: re.Match[str]) -> str:
    if not _secret_name(match.group(2)):
        return match.group(0)
    quote = match.group(1)
    return f"{quote}{match.group(2)}{quote}{match.group(3)}{REDACTED}"


def redact_argv(argv: Sequence[str]) -> list[str]:
    """The command line with the values of secrets replaced by ``(hidden)``.

    remoteops takes no secret on its command line (passwords come from files or
    prompts), but the remote command it runs may hold one. The rule, applied to
    every word, also to the words inside one argument that holds a whole shell
    command (``"PGPASSWORD=x psql ..."``), quotes respected:

    - a secret name is one that, lowercased and without ``-`` and ``_``, ends with
      password, passwd, pass, pwd, passphrase, secret, token, apikey, accesskey,
      secretkey, privatekey, credential(s), auth, authorization or cookie
      (``--db-password``, ``--client_secret``, ``AWS_SECRET_ACCESS_KEY``);
    - an option with a secret name: its value is hidden, given as ``--name=VALUE``
      or as the next word (unless that word starts with ``-``);
    - ``NAME=VALUE`` with a secret name (an environment assignment, ``--env``) hides VALUE;
    - a URL's password (``scheme://user:PASSWORD@host``) is hidden, the user kept;
    - in inline JSON or YAML (``-e '{"db_password": "x"}'``) a secret name's value is hidden;
    - options that carry a password under another name, after their client: MySQL's
      (mysql, mariadb, mysqldump, ...) ``-pSECRET``, sshpass' ``-p SECRET``, curl's
      ``-u USER:SECRET`` (the user kept).

    Over-hiding is preferred to leaking: ``--bypass VALUE`` is hidden too. remoteops'
    own ``--ask-pass`` is a flag and hides nothing.
    """
    state = _RedactState()
    out: list[str] = []
    for arg in argv:
        if ":" in arg:
            arg = _MAPPING_ENTRY.sub(_redact_entry, arg)
        if not any(c.isspace() for c in arg):
            out.append(_redact_word(arg, state))
            continue
        out.append(_WORD.sub(lambda m: _redact_word(m.group(0), state), arg))
    return out


# --------------------------------------------------------------------------- records


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run as the history holds it."""

    id: int
    job: str
    command: str
    argv: list[str]
    user: str
    inventory: str | None
    pattern: str | None
    started: float
    ended: float | None
    exit_code: int | None
    duration_s: float | None
    status: RunStatus
    counts: dict[str, int]

    @property
    def hosts(self) -> int:
        """How many host records the run has."""
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        """The ``run`` record (docs/history.md)."""
        return {
            "v": JSON_VERSION,
            "type": "run",
            "id": self.id,
            "job": self.job,
            "command": self.command,
            "argv": self.argv,
            "user": self.user,
            "inventory": self.inventory,
            "pattern": self.pattern,
            "started": _iso(self.started),
            "ended": _iso(self.ended),
            "status": self.status,
            "exit_code": self.exit_code,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "hosts": self.hosts,
            **{s: self.counts.get(s, 0) for s in STATUSES},
        }


@dataclass(frozen=True, slots=True)
class RunDetail:
    """A run and its host records (``HostResult.to_json`` form, outputs as kept)."""

    run: RunInfo
    hosts: list[dict[str, Any]]
    analysis: list[dict[str, Any]] = field(default_factory=list)
    """The run's ``analysis`` records (docs/json.md), as :meth:`Recorder.analysis` kept them."""

    def summary_json(self) -> dict[str, Any]:
        """The ``summary`` record, as ``--json`` ends with; ``exit_code`` null if incomplete;
        ``findings`` when the run kept analysis records."""
        counts = self.run.counts
        findings: dict[str, Any] = {}
        if self.analysis:
            findings["findings"] = sum(
                len(a["findings"]) for a in self.analysis if isinstance(a.get("findings"), list)
            )
        return {
            "v": JSON_VERSION,
            "type": "summary",
            "hosts": len({h["host"] for h in self.hosts}),
            "ok": counts.get("ok", 0),
            "failed": counts.get("failed", 0),
            "unreachable": counts.get("unreachable", 0) + counts.get("hostkey", 0),
            "hostkey": counts.get("hostkey", 0),
            "timeout": counts.get("timeout", 0),
            "interrupted": counts.get("interrupted", 0),
            "skipped": counts.get("skipped", 0),
            "duration_s": round(self.run.duration_s or 0.0, 3),
            "exit_code": self.run.exit_code,
            **findings,
        }

    def to_json_lines(self) -> list[dict[str, Any]]:
        """``history show --json``: the run record, one host record each, the analysis
        records, the summary."""
        return [self.run.to_json(), *self.hosts, *self.analysis, self.summary_json()]


@dataclass(frozen=True, slots=True)
class HostDiff:
    """How one host (or one playbook step of a host) differs between two runs."""

    host: str
    change: Literal["status", "output", "added", "gone"]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    streams: tuple[str, ...] = ()
    step: tuple[int, int] | None = None
    step_name: str | None = None
    """The playbook step's ``name:`` (its ``step_name``), when the change is in a step."""
    outputs: Mapping[str, tuple[bytes, bytes]] = field(
        default_factory=dict, compare=False, repr=False
    )
    """For an ``output`` change: each stream of ``streams`` as kept, (before, after), not
    normalised (not part of the JSON record: see :mod:`remoteops.reporting` for a diff)."""

    def to_json(self) -> dict[str, Any]:
        """One entry of the ``diff`` record's ``hosts``."""
        data: dict[str, Any] = {
            "host": self.host,
            "change": self.change,
            "before": self.before,
            "after": self.after,
        }
        if self.streams:
            data["streams"] = list(self.streams)
        if self.step is not None:
            data["play"], data["step"] = self.step
        return data


@dataclass(frozen=True, slots=True)
class RunDiff:
    """What changed from run ``a`` to run ``b``."""

    a: RunInfo
    b: RunInfo
    normalized: bool
    hosts: list[HostDiff] = field(default_factory=list)
    hosts_a: frozenset[str] = frozenset()
    """Every host run ``a`` has a record of (a playbook step added to a host is not a host
    added)."""
    hosts_b: frozenset[str] = frozenset()
    """Every host run ``b`` has a record of."""

    def names(self, change: str) -> list[str]:
        """The hosts with one kind of change, sorted."""
        return sorted({d.host for d in self.hosts if d.change == change})

    def render_text(self) -> str:
        """``history diff`` on a terminal: one line per changed host, or that none changed."""
        how = ", outputs normalised" if self.normalized else ""
        lines = [f"run {self.a.id} -> run {self.b.id} ({self.b.job}{how})"]
        for d in self.hosts:
            where = f" play {d.step[0]} step {d.step[1]}" if d.step else ""
            if d.change == "status" and d.before and d.after:
                what = f"{status_words(d.before)} -> {status_words(d.after)}"
            elif d.change == "output":
                what = " and ".join(d.streams) + " changed"
            elif d.change == "added":
                what = f"added ({status_words(d.after)})"
            else:
                what = f"gone (was {status_words(d.before)})"
            lines.append(f"{d.host}{where}: {what}")
        if not self.hosts:
            lines.append("no host changed")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """The ``diff`` record (docs/history.md)."""
        return {
            "v": JSON_VERSION,
            "type": "diff",
            "a": self.a.id,
            "b": self.b.id,
            "normalized": self.normalized,
            "status_changed": self.names("status"),
            "output_changed": self.names("output"),
            "added": self.names("added"),
            "gone": self.names("gone"),
            "hosts": [d.to_json() for d in self.hosts],
        }


def status_words(brief: Mapping[str, Any] | None) -> str:
    """A :class:`HostDiff`'s ``before`` or ``after`` in words: ``ok``, ``failed (exit 2)``,
    ``unreachable``; ``-`` for none."""
    if brief is None:
        return "-"
    code = brief.get("exit_code")
    return f"{brief['status']} (exit {code})" if code not in (None, 0) else str(brief["status"])


def render_runs(runs: Sequence[RunInfo]) -> str:
    """``history list`` on a terminal: a table, newest first, times in local time."""
    rows = [("ID", "STARTED", "STATUS", "EXIT", "SECONDS", "HOSTS", "JOB")]
    for r in runs:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(r.counts.items(), key=_by_status))
        rows.append(
            (
                str(r.id),
                datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M:%S"),
                r.status,
                "-" if r.exit_code is None else str(r.exit_code),
                "-" if r.duration_s is None else f"{r.duration_s:.1f}",
                counts or "0",
                r.job,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True))
        + f"  {row[-1]}\n"
        for row in rows
    )


def _by_status(item: tuple[str, int]) -> int:
    order: tuple[str, ...] = STATUSES
    return order.index(item[0]) if item[0] in order else len(order)


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What ``prune`` did."""

    runs_deleted: int
    bytes_before: int
    bytes_after: int
    vacuumed: bool


# --------------------------------------------------------------------------- the store


class _Any:
    """The pattern filter's "any pattern" (None means runs without one)."""


ANY: Final = _Any()


def _any(pattern: str | None) -> str | _Any:
    return ANY if pattern is None else pattern


def _process_identity(pid: int) -> str | None:
    """This boot's id and the process's start time (Linux), or None where /proc has none."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the name may hold spaces and parentheses
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None


def _process_alive(machine: str, pid: int, identity: str | None) -> bool:
    """Whether the run's process may still be running (on another machine: assume so)."""
    if machine != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return identity is None or _process_identity(pid) in (identity, None)


def _pack(data: bytes) -> bytes:
    return zlib.compress(data, 6) if data else b""


def _unpack(blob: bytes | None) -> bytes:
    return zlib.decompress(blob) if blob else b""


class HistoryStore:
    """The history file. Opening is lazy; each method opens its own connection."""

    def __init__(self, path: Path | None = None, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = default_history_path() if path is None else path
        self.busy_timeout = busy_timeout

    # ---------------------------------------------------------------- connections

    def connect(self, *, create: bool) -> sqlite3.Connection:
        """An open, migrated connection. Raises OSError or sqlite3.Error."""
        if create:
            if not self.path.parent.is_dir():
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Created 0600 before SQLite sees it: its -wal and -shm files take the same mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        elif not self.path.exists():
            raise FileNotFoundError(self.path)
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            _wal(db, self.busy_timeout)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            _migrate(db, self.path)
        except BaseException:
            db.close()
            raise
        return db

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for a query; failures become one clean HistoryError line."""
        try:
            db = self.connect(create=False)
        except FileNotFoundError:
            raise HistoryError(
                f"{self.path}: no history yet (runs are recorded unless --no-history)"
            ) from None
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"{self.path}: cannot read the history ({exc})") from None
        try:
            yield db
        except sqlite3.Error as exc:
            raise HistoryError(f"{self.path}: cannot read the history ({exc})") from None
        finally:
            db.close()

    # ---------------------------------------------------------------- recording

    def start_run(
        self,
        *,
        command: str,
        argv: Sequence[str],
        pattern: str | None,
        inventory: str | None,
        job: str | None = None,
        max_output: int | None = None,
        user: str | None = None,
        started: float | None = None,
    ) -> Recorder:
        """Record that a run starts; never raises (a failure is one warning)."""
        return Recorder(
            self,
            command=command,
            argv=redact_argv(argv),
            pattern=pattern,
            inventory=inventory,
            job=job or default_job(command, pattern),
            max_output=max_output,
            user=user or _user(),
            started=time.time() if started is None else started,
        )

    # ---------------------------------------------------------------- queries

    def _runs(
        self,
        db: sqlite3.Connection,
        *,
        run_id: int | None = None,
        command: str | None = None,
        pattern: str | _Any | None = ANY,
        job: str | None = None,
        since: float | None = None,
        started_before: float | None = None,
        below: int | None = None,
        status: Collection[str] = (),
        limit: int | None = None,
    ) -> list[RunInfo]:
        """Runs newest first, filtered (``pattern=None`` means runs without a pattern)."""
        rows = db.execute(
            _SELECT_RUNS,
            {
                "id": run_id,
                "command": command,
                "by_pattern": pattern is not ANY,
                "pattern": None if isinstance(pattern, _Any) else pattern,
                "job": job,
                "since": since,
                "started_before": started_before,
                "below": below,
                "limit": -1 if limit is None or status else limit,
            },
        ).fetchall()
        runs = []
        for row in rows:
            rid, job_, cmd, argv, user, inv, pat, started, ended, code, dur = row[:11]
            machine, pid, process = row[11:]
            state: RunStatus
            if ended is None:
                state = "running" if _process_alive(machine, pid, process) else "incomplete"
            else:
                state = "ok" if code == ExitCode.OK else "failed"
            if status and state not in status:
                continue
            runs.append(
                RunInfo(
                    id=rid,
                    job=job_,
                    command=cmd,
                    argv=json.loads(argv),
                    user=user,
                    inventory=inv,
                    pattern=pat,
                    started=started,
                    ended=ended,
                    exit_code=code,
                    duration_s=dur,
                    status=state,
                    counts={},
                )
            )
            if limit is not None and len(runs) >= limit:
                break
        by_id = {r.id: r.counts for r in runs}
        for rid, host_status, n in db.execute(_COUNT_HOSTS, (json.dumps(list(by_id)),)):
            by_id[rid][host_status] = n
        return runs

    def _one(self, db: sqlite3.Connection, run_id: int) -> RunInfo:
        runs = self._runs(db, run_id=run_id)
        if not runs:
            raise UsageError(f"run {run_id}: no such run in the history")
        return runs[0]

    def list_runs(
        self,
        *,
        command: str | None = None,
        pattern: str | None = None,
        job: str | None = None,
        status: Collection[str] = (),
        since: float | None = None,
        limit: int | None = 20,
    ) -> list[RunInfo]:
        """Runs newest first, filtered; ``status`` among ok, failed, running, incomplete."""
        unknown = set(status) - set(RUN_STATUSES)
        if unknown:
            raise UsageError(f"--status {','.join(sorted(unknown))}: use {', '.join(RUN_STATUSES)}")
        with self._reading() as db:
            return self._runs(
                db,
                command=command,
                pattern=_any(pattern),
                job=job,
                status=status,
                since=since,
                limit=limit,
            )

    def resolve(self, ref: str, *, command: str | None = None, pattern: str | None = None) -> int:
        """The run id ``ref`` names: ``ID``, ``last`` or ``last~N`` (N runs before the last),
        among the runs of ``command`` and ``pattern`` when given."""
        text = ref.strip()
        match = re.fullmatch(r"last(?:~(\d+))?|(\d+)", text)
        if match is None:
            raise UsageError(f"run {ref!r}: give a run id, last or last~N")
        scope = "" if command is None and pattern is None else " of that command and pattern"
        with self._reading() as db:
            if match.group(2) is not None:
                runs = self._runs(
                    db, run_id=int(match.group(2)), command=command, pattern=_any(pattern)
                )
            else:
                back = int(match.group(1) or 0)
                runs = self._runs(db, command=command, pattern=_any(pattern), limit=back + 1)
                runs = runs[back:]
        if not runs:
            raise UsageError(
                f"run {ref!r}: no such run in the history{scope}; `remoteops history list` "
                "shows them"
            )
        return runs[0].id

    def run(self, run_id: int) -> RunInfo:
        """One run, without its hosts."""
        with self._reading() as db:
            return self._one(db, run_id)

    def show(self, run_id: int) -> RunDetail:
        """A run and each host record, in the order hosts finished."""
        with self._reading() as db:
            run = self._one(db, run_id)
            rows = db.execute(
                "SELECT record, stdout, stderr FROM hosts WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
            analysis = [
                json.loads(record)
                for (record,) in db.execute(
                    "SELECT record FROM analysis WHERE run_id = ? ORDER BY seq", (run_id,)
                )
            ]
        hosts = []
        for record, out, err in rows:
            data: dict[str, Any] = {}
            for key, value in json.loads(record).items():  # the keys in --json's order
                data[key] = value
                if key == "exit_code":
                    data["stdout"] = _unpack(out).decode("utf-8", errors="replace")
                    data["stderr"] = _unpack(err).decode("utf-8", errors="replace")
            hosts.append(data)
        return RunDetail(run, hosts, analysis)

    def hosts(self, run_id: int, statuses: Collection[str] = ()) -> list[str]:
        """The run's hosts whose result is in ``statuses`` (all when empty), sorted, once each.

        A host with several records (a playbook's steps) counts with each of its
        statuses: ``failed`` lists a host if any step of it failed.
        """
        unknown = set(statuses) - set(STATUSES)
        if unknown:
            raise UsageError(f"--status {','.join(sorted(unknown))}: use {', '.join(STATUSES)}")
        with self._reading() as db:
            self._one(db, run_id)
            rows = db.execute(
                "SELECT DISTINCT host, status FROM hosts WHERE run_id = ?", (run_id,)
            ).fetchall()
        return sorted({host for host, status in rows if not statuses or status in statuses})

    def not_succeeded(self, command: str, pattern: str | None) -> tuple[int, list[str]]:
        """For ``--rerun-failed``: the last finished or incomplete run of ``command`` on
        ``pattern``, and its hosts that did not succeed (sorted; empty if all did)."""
        none = UsageError(
            f"no earlier run of `{command}` on {pattern or 'its hosts'} in the history "
            "to rerun the failed hosts of"
        )
        if not self.path.exists():
            raise none
        with self._reading() as db:
            runs = self._runs(
                db, command=command, pattern=pattern, status=("ok", "failed", "incomplete"), limit=1
            )
            if not runs:
                raise none
            rows = db.execute(
                "SELECT DISTINCT host FROM hosts WHERE run_id = ? AND status != 'ok'",
                (runs[0].id,),
            ).fetchall()
        return runs[0].id, sorted(host for (host,) in rows)

    def diff(
        self, a: int | None = None, b: int | None = None, *, normalize: bool = False
    ) -> RunDiff:
        """What changed from run ``a`` to run ``b``.

        Without ``b``: ``b`` is ``a`` when given, else the last run. Without ``a``: the run
        before ``b`` of the same command and pattern. Outputs compare as kept
        (up to ``--max-output``); ``normalize`` masks them first exactly as the
        ``group:normalize`` analyzer does.
        """
        if b is None:
            b, a = (a, None) if a is not None else (self.resolve("last"), None)
        with self._reading() as db:
            run_b = self._one(db, b)
            if a is None:
                earlier = self._runs(
                    db, command=run_b.command, pattern=run_b.pattern, below=b, limit=1
                )
                if not earlier:
                    raise UsageError(
                        f"run {b}: no earlier run of `{run_b.command}` on "
                        f"{run_b.pattern or 'its hosts'} to compare with"
                    )
                a = earlier[0].id
            run_a = self._one(db, a)
            before = _host_outputs(db, a)
            after = _host_outputs(db, b)
        return RunDiff(
            run_a,
            run_b,
            normalize,
            _compare(before, after, normalize),
            frozenset(key[0] for key in before),
            frozenset(key[0] for key in after),
        )

    def last_success(self, job: str) -> float | None:
        """When the last run of ``job`` that exited 0 ended (a Unix time), or None."""
        with self._reading() as db:
            row = db.execute(
                "SELECT max(ended) FROM runs WHERE job = ? AND exit_code = ?", (job, ExitCode.OK)
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # ---------------------------------------------------------------- retention

    def prune(
        self,
        *,
        max_age_s: float | None = DEFAULT_MAX_AGE_S,
        max_size: int | None = DEFAULT_MAX_SIZE,
        vacuum: bool | None = None,
        now: float | None = None,
    ) -> PruneResult:
        """Delete runs started more than ``max_age_s`` ago, then the oldest runs until the
        data fits ``max_size`` bytes. Runs still running are kept.

        ``vacuum``: True always compacts the file after deleting, False never,
        None (the default) when a quarter of the file or more is free pages.
        """
        now = time.time() if now is None else now
        try:
            db = self.connect(create=False)
        except FileNotFoundError:
            return PruneResult(0, 0, 0, vacuumed=False)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"{self.path}: cannot prune the history ({exc})") from None
        try:
            before = _file_bytes(self.path)
            deleted = 0
            if max_age_s is not None:
                deleted += _delete(db, self._runs(db, started_before=now - max_age_s))
            if max_size is not None:
                for _ in range(64):  # each pass deletes an eighth of the runs: bounded
                    if _used_bytes(db) <= max_size:
                        break
                    runs = self._runs(db)
                    gone = _delete(db, runs[len(runs) - max(1, len(runs) // 8) :])
                    if not gone:
                        break
                    deleted += gone
            pages, free = (
                db.execute("PRAGMA page_count").fetchone()[0],
                db.execute("PRAGMA freelist_count").fetchone()[0],
            )
            compact = bool(deleted) and (vacuum is True or (vacuum is None and free * 4 >= pages))
            if compact:
                db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return PruneResult(deleted, before, _file_bytes(self.path), vacuumed=compact)
        except sqlite3.Error as exc:
            raise HistoryError(f"{self.path}: cannot prune the history ({exc})") from None
        finally:
            db.close()


def _delete(db: sqlite3.Connection, runs: Sequence[RunInfo]) -> int:
    """Delete these runs but those still running; how many were deleted."""
    ids = [r.id for r in runs if r.status != "running"]
    for start in range(0, len(ids), 500):
        chunk = json.dumps(ids[start : start + 500])
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM hosts WHERE run_id IN (SELECT value FROM json_each(?))", (chunk,))
        db.execute(
            "DELETE FROM analysis WHERE run_id IN (SELECT value FROM json_each(?))", (chunk,)
        )
        db.execute("DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?))", (chunk,))
        db.execute("COMMIT")
    return len(ids)


_SELECT_RUNS: Final = """
    SELECT id, job, command, argv, user, inventory, pattern, started, ended, exit_code,
           duration_s, machine, pid, process
    FROM runs
    WHERE (:id IS NULL OR id = :id)
      AND (:command IS NULL OR command = :command)
      AND (NOT :by_pattern OR pattern IS :pattern)
      AND (:job IS NULL OR job = :job)
      AND (:since IS NULL OR started >= :since)
      AND (:started_before IS NULL OR started < :started_before)
      AND (:below IS NULL OR id < :below)
    ORDER BY id DESC
    LIMIT :limit
"""
_COUNT_HOSTS: Final = """
    SELECT run_id, status, count(*) FROM hosts
    WHERE run_id IN (SELECT value FROM json_each(?))
    GROUP BY run_id, status
"""


def _file_bytes(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            total += Path(f"{path}{suffix}").stat().st_size
    return total


def _used_bytes(db: sqlite3.Connection) -> int:
    page = int(db.execute("PRAGMA page_size").fetchone()[0])
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
    return (pages - free) * page


_Key = tuple[str, int | None, int | None]


def _host_outputs(
    db: sqlite3.Connection, run_id: int
) -> dict[_Key, tuple[dict[str, Any], bytes, bytes]]:
    """Per (host, play, step): the last record, its stdout and stderr."""
    found: dict[_Key, tuple[dict[str, Any], bytes, bytes]] = {}
    for record, out, err in db.execute(
        "SELECT record, stdout, stderr FROM hosts WHERE run_id = ? ORDER BY seq", (run_id,)
    ):
        data = json.loads(record)
        key = (data["host"], data.get("play"), data.get("step"))
        found[key] = (data, _unpack(out), _unpack(err))
    return found


def _compare(
    before: Mapping[_Key, tuple[dict[str, Any], bytes, bytes]],
    after: Mapping[_Key, tuple[dict[str, Any], bytes, bytes]],
    normalize: bool,
) -> list[HostDiff]:
    clean: Callable[[bytes, str], bytes] = lambda data, _host: data  # noqa: E731
    if normalize:
        from remoteops.analysis.textscan import normalise

        clean = lambda data, host: normalise(data, host=host)  # noqa: E731

    def brief(data: dict[str, Any]) -> dict[str, Any]:
        return {"status": data["status"], "exit_code": data["exit_code"]}

    diffs: list[HostDiff] = []
    for key in sorted(before.keys() | after.keys(), key=lambda k: (k[0], k[1] or 0, k[2] or 0)):
        host = key[0]
        step = (key[1], key[2]) if key[1] is not None and key[2] is not None else None
        old, new = before.get(key), after.get(key)
        known = new if new is not None else old
        name = _step_name(known[0]) if step and known is not None else None
        if old is None and new is not None:
            diffs.append(HostDiff(host, "added", None, brief(new[0]), step=step, step_name=name))
        elif new is None and old is not None:
            diffs.append(HostDiff(host, "gone", brief(old[0]), None, step=step, step_name=name))
        elif old is not None and new is not None:
            was, now = brief(old[0]), brief(new[0])
            if was != now:
                diffs.append(HostDiff(host, "status", was, now, step=step, step_name=name))
                continue
            outputs = {
                name: (x, y)
                for name, x, y in (("stdout", old[1], new[1]), ("stderr", old[2], new[2]))
                if clean(x, host) != clean(y, host)
            }
            if outputs:
                diffs.append(
                    HostDiff(host, "output", was, now, tuple(outputs), step, name, outputs)
                )
    return diffs


def _step_name(record: Mapping[str, Any]) -> str | None:
    name = record.get("step_name")
    return name if isinstance(name, str) else None


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return str(os.getuid())


# --------------------------------------------------------------------------- the recorder


class Recorder:
    """Writes one run into the history as it happens. Thread-safe; never raises.

    Made by :meth:`HistoryStore.start_run`. Each :meth:`host` call is one
    committed transaction, so what a killed process recorded stays.
    """

    def __init__(
        self,
        store: HistoryStore,
        *,
        command: str,
        argv: list[str],
        pattern: str | None,
        inventory: str | None,
        job: str,
        max_output: int | None,
        user: str,
        started: float,
    ) -> None:
        self.store = store
        self.job = job
        self.started = started
        self.run_id: int | None = None
        self._lock = threading.Lock()
        self._seq = 0
        self._db: sqlite3.Connection | None = None
        self._failed = False
        if max_output is None:
            from remoteops.session import DEFAULT_MAX_OUTPUT

            max_output = DEFAULT_MAX_OUTPUT
        self.max_output = max(max_output, 0)
        with self._lock:
            self._guard(
                lambda: self._open(
                    (
                        started,
                        command,
                        json.dumps(argv),
                        user,
                        inventory,
                        pattern,
                        socket.gethostname(),
                        os.getpid(),
                        _process_identity(os.getpid()),
                        job,
                        self.max_output,
                    )
                )
            )

    @property
    def active(self) -> bool:
        """Whether the run is being recorded (False after a failure, or after finish)."""
        return self._db is not None and not self._failed

    def _open(self, row: tuple[Any, ...]) -> None:
        row = _sql_row(row)
        db = self.store.connect(create=True)
        self._db = db
        cur = db.execute(
            "INSERT INTO runs (started, command, argv, user, inventory, pattern, machine, pid, "
            "process, "
            "job, max_output) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        self.run_id = cur.lastrowid

    def _guard(self, write: Callable[[], None], *, pruning: bool = False) -> None:
        """Run ``write``; on the first failure warn once and stop recording."""
        if self._failed:
            return
        try:
            write()
        except (OSError, sqlite3.Error, HistoryError, ValueError) as exc:
            self._failed = True
            if isinstance(exc, HistoryError):
                reason = exc.message.removeprefix(f"{self.store.path}: ")
            elif isinstance(exc, OSError) and exc.strerror:
                reason = exc.strerror
            else:
                reason = str(exc)
            what = (
                "the run is recorded but old runs were not pruned"
                if pruning
                else "the run goes on without it"
            )
            log.warning(
                "history %s: cannot %s (%s); %s (--no-history turns history off)",
                self.store.path,
                "prune old runs" if pruning else "record this run",
                reason,
                what,
            )
            self._close()

    def _close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def host(self, result: HostResult) -> None:
        """Record one host's result as it finishes."""
        record = result.to_json()
        out, out_cut = _cap(result.stdout, self.max_output, result.stdout_truncated)
        err, err_cut = _cap(result.stderr, self.max_output, result.stderr_truncated)
        record.pop("stdout")
        record.pop("stderr")
        if out_cut or err_cut:
            record["stdout_truncated_bytes"] = out_cut
            record["stderr_truncated_bytes"] = err_cut
        row = (
            result.host,
            result.status,
            result.exit_code,
            result.duration_s,
            result.error,
            json.dumps(record, default=str),
            _pack(out),
            _pack(err),
        )
        row = _sql_row(row)
        with self._lock:
            if self._db is None:
                return
            db = self._db
            self._seq += 1
            seq = self._seq
            self._guard(
                lambda: db.execute(
                    "INSERT INTO hosts (run_id, seq, host, status, exit_code, duration_s, "
                    "error, record, stdout, stderr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.run_id, seq, *row),
                ).close()
            )

    def analysis(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Keep the run's ``analysis`` records (docs/json.md: ``--analyze``, ``--rules``),
        in one transaction, after those kept before. Records of another ``type`` are
        ignored. Call it before or after :meth:`finish`; like every write, a failure is
        one warning and never raises."""
        kept = [
            json.dumps(dict(r), default=str)
            for r in records
            if r.get("type", "analysis") == "analysis"
        ]
        if not kept:
            return

        def write() -> None:
            db = self._db if self._db is not None else self.store.connect(create=False)
            try:
                db.execute("BEGIN IMMEDIATE")
                (last,) = db.execute(
                    "SELECT coalesce(max(seq), 0) FROM analysis WHERE run_id = ?", (self.run_id,)
                ).fetchone()
                db.executemany(
                    "INSERT INTO analysis (run_id, seq, record) VALUES (?, ?, ?)",
                    [(self.run_id, last + i, r) for i, r in enumerate(kept, 1)],
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                if db is not self._db:
                    db.close()

        with self._lock:
            if self.run_id is None:
                return
            self._guard(write)

    def finish(
        self,
        exit_code: int,
        duration_s: float,
        *,
        max_age_s: float | None = DEFAULT_MAX_AGE_S,
        max_size: int | None = DEFAULT_MAX_SIZE,
    ) -> None:
        """Record how the run ended, close the file, and apply the retention (None: no limit)."""
        with self._lock:
            db = self._db
            if db is None:
                return
            self._guard(
                lambda: db.execute(
                    "UPDATE runs SET ended = ?, exit_code = ?, duration_s = ? WHERE id = ?",
                    (time.time(), exit_code, duration_s, self.run_id),
                ).close()
            )
            self._close()
            if max_age_s is not None or max_size is not None:
                self._guard(lambda: _pruned(self.store, max_age_s, max_size), pruning=True)


def _pruned(store: HistoryStore, max_age_s: float | None, max_size: int | None) -> None:
    store.prune(max_age_s=max_age_s, max_size=max_size)


def _sql_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """``row`` with every text SQLite can store: a name that came from the command line
    or the file system as bytes that are not UTF-8 (surrogate escapes) is kept with
    those bytes shown as ``\\udcXX``, as JSON shows them, instead of failing the insert."""
    return tuple(_sql_text(v) if isinstance(v, str) else v for v in row)


def _sql_text(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _cap(data: bytes, limit: int, cut: int) -> tuple[bytes, int]:
    if len(data) <= limit:
        return data, cut
    return data[:limit], cut + len(data) - limit

"""`get` against a malicious SFTP server: nothing is ever written outside LOCAL_DIR/<host>/.

The server is paramiko in server mode (any public key logs in as any user)
with an in-memory file system that lies: names with ``..``, ``/``, control
characters, directories that are files, symlinks pointing out of the tree,
``realpath`` answers outside the requested tree, setuid modes. Every test
snapshots the whole test directory before and after and checks that the only
changes are under ``LOCAL_DIR/evil/``, and that the unique absolute paths the
server aims at (``/tmp/remoteops-escape-<id>``, ``/etc/evil-<id>``) never appear.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.sftp import SFTP_NO_SUCH_FILE, SFTP_OK, SFTP_OP_UNSUPPORTED
from paramiko.sftp_attr import SFTPAttributes

from remoteops.lab import Lab

pytestmark = pytest.mark.integration

GOOD = b"good content\n"
EVIL = b"EVIL CONTENT - must never be written outside LOCAL_DIR/evil\n"
_WAIT = 10.0  # bound on every wait for server threads


# --------------------------------------------------------------------------- fake file system


@dataclass
class Node:
    """One entry of the fake file system."""

    kind: str  # "file", "dir" or "link"
    data: bytes = b""
    mode: int = 0o644
    target: str = ""  # for links: what readlink says
    size: int | None = None  # the size stat claims, if not len(data)
    children: list[tuple[str | bytes, Node]] = field(default_factory=list)

    def attrs(self, name: str | bytes = "", *, follow: bool = False) -> SFTPAttributes:
        attr = SFTPAttributes()
        attr.filename = name  # type: ignore[assignment]  # bytes: sent as is (not UTF-8)
        kind = self.kind
        if kind == "link" and follow:
            kind = "file"
        if kind == "file":
            attr.st_mode = stat.S_IFREG | self.mode
            attr.st_size = len(self.data) if self.size is None else self.size
        elif kind == "dir":
            attr.st_mode = stat.S_IFDIR | 0o755
            attr.st_size = 4096
        else:
            attr.st_mode = stat.S_IFLNK | 0o777
            attr.st_size = len(self.target)
        attr.st_uid = attr.st_gid = 0
        attr.st_atime = attr.st_mtime = 1_700_000_000
        return attr


def file(data: bytes = EVIL, mode: int = 0o644) -> Node:
    return Node("file", data=data, mode=mode)


def folder(*children: tuple[str | bytes, Node]) -> Node:
    return Node("dir", children=list(children))


def link(target: str) -> Node:
    # What a real server serves when the link is followed: the server's own file.
    return Node("link", target=target, data=b"root:x:0:0:root:/root:/bin/sh\n")


@dataclass
class FakeFS:
    """Paths the server knows; ``any_file`` answers every other path with a regular file."""

    paths: dict[str, Node]
    realpath: str | bytes | None = None  # what canonicalize(".") (the home) returns
    any_file: bool = False
    requests: list[tuple[str, str]] = field(default_factory=list)
    execs: list[bytes] = field(default_factory=list)  # commands asked for (all refused)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def log(self, op: str, path: str) -> None:
        with self.lock:
            self.requests.append((op, path))

    def lookup(self, path: str) -> Node | None:
        node = self.paths.get(path)
        if node is None:  # a child of a known directory
            parent, name = posixpath.split(path)
            folder_node = self.paths.get(parent)
            if folder_node is not None and folder_node.kind == "dir":
                node = next((c for n, c in folder_node.children if n == name), None)
        if node is None and self.any_file:
            return file()
        return node


class _Handle(paramiko.SFTPHandle):
    def __init__(self, node: Node) -> None:
        super().__init__(0)
        self._node = node

    def read(self, offset: int, length: int) -> bytes:
        return self._node.data[offset : offset + length]

    def stat(self) -> SFTPAttributes:
        return self._node.attrs(follow=True)


class EvilSFTP(paramiko.SFTPServerInterface):
    """Answers from a FakeFS; lies exactly as the FakeFS says."""

    def __init__(self, server: Any, fs: FakeFS) -> None:
        super().__init__(server)
        self.fs = fs

    def list_folder(self, path: str) -> list[SFTPAttributes] | int:
        self.fs.log("list", path)
        node = self.fs.paths.get(path)
        if node is None or node.kind != "dir":
            return SFTP_NO_SUCH_FILE
        # Real servers send "." and ".." too.
        out = [folder().attrs("."), folder().attrs("..")]
        out += [child.attrs(name) for name, child in node.children]
        return out

    def stat(self, path: str) -> SFTPAttributes | int:
        self.fs.log("stat", path)
        node = self.fs.lookup(path)
        return SFTP_NO_SUCH_FILE if node is None else node.attrs(follow=True)

    def lstat(self, path: str) -> SFTPAttributes | int:
        self.fs.log("lstat", path)
        node = self.fs.lookup(path)
        return SFTP_NO_SUCH_FILE if node is None else node.attrs()

    def open(self, path: str, flags: int, attr: SFTPAttributes) -> paramiko.SFTPHandle | int:
        self.fs.log("open", path)
        if flags & (os.O_WRONLY | os.O_RDWR):
            return SFTP_OP_UNSUPPORTED
        node = self.fs.lookup(path)
        if node is None or node.kind == "dir":
            node = file()  # "open() of any path returns content"
        return _Handle(node)

    def readlink(self, path: str) -> str | int:
        self.fs.log("readlink", path)
        node = self.fs.lookup(path)
        if node is None or node.kind != "link":
            return SFTP_NO_SUCH_FILE
        return node.target

    def canonicalize(self, path: str) -> str:
        self.fs.log("realpath", path)
        if self.fs.realpath is not None and path in (".", ""):
            return self.fs.realpath  # type: ignore[return-value]  # bytes: sent as is
        return posixpath.normpath("/" + path)

    def remove(self, path: str) -> int:
        self.fs.log("remove", path)
        return SFTP_OK


class _Auth(paramiko.ServerInterface):
    def __init__(self, fs: FakeFS) -> None:
        self.fs = fs

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        with self.fs.lock:
            self.fs.execs.append(command)
        return False  # no sha256sum, find or tar here: the client must do without


class EvilServer:
    """A paramiko SSH server on 127.0.0.1, one thread per connection, serving ``fs``."""

    def __init__(self, host_key: paramiko.PKey, fs: FakeFS) -> None:
        self.fs = fs
        self._key = host_key
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._transports: list[paramiko.Transport] = []
        self._lock = threading.Lock()
        self.errors: list[BaseException] = []
        self._acceptor = threading.Thread(target=self._accept, name="evil-accept", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve, args=(conn,), name="evil-conn", daemon=True
            )
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        transport: paramiko.Transport | None = None
        try:
            conn.settimeout(None)
            transport = paramiko.Transport(conn)
            with self._lock:
                self._transports.append(transport)
            transport.add_server_key(self._key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, EvilSFTP, self.fs)
            transport.start_server(server=_Auth(self.fs))
            deadline = time.monotonic() + 120
            while transport.is_active() and not self._stop.is_set():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        except (paramiko.SSHException, EOFError, OSError):
            pass  # the client went away
        except BaseException as exc:  # never let a server thread raise into pytest
            self.errors.append(exc)
        finally:
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.close()
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            transports, threads = list(self._transports), list(self._threads)
        for transport in transports:
            with contextlib.suppress(Exception):
                transport.close()
        self._acceptor.join(_WAIT)
        for thread in threads:
            thread.join(_WAIT)
        for transport in transports:
            transport.join(_WAIT)


# --------------------------------------------------------------------------- fixtures


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return Path(f"{path}.pub").read_text().split()[1]


@dataclass
class Evil:
    """What a test needs to point remoteops at the evil server."""

    tmp: Path
    client_key: Path
    known_hosts: Path
    inventory: Path
    local: Path  # LOCAL_DIR (pre-created, deep enough for ../../.. to leave it)
    esc: str  # unique id of this test's escape targets
    known_hosts_line: str = ""
    start: Callable[[FakeFS], EvilServer] = field(init=False)

    @property
    def host_dir(self) -> Path:
        return self.local / "evil"

    @property
    def tmp_escape(self) -> str:
        return f"/tmp/remoteops-escape-{self.esc}"

    @property
    def etc_escape(self) -> str:
        return f"/etc/evil-{self.esc}"


@pytest.fixture
def evil(tmp_path: Path) -> Iterator[Evil]:
    keys = tmp_path / "keys"
    keys.mkdir()
    _keygen(keys / "host.key")
    host_key = paramiko.Ed25519Key.from_private_key_file(str(keys / "host.key"))
    _keygen(keys / "client.key")
    local = tmp_path / "w1" / "w2" / "w3" / "fetched"
    local.mkdir(parents=True)
    servers: list[EvilServer] = []
    ev = Evil(
        tmp=tmp_path,
        client_key=keys / "client.key",
        known_hosts=keys / "known_hosts",
        inventory=tmp_path / "evil.yml",
        local=local,
        esc=uuid.uuid4().hex[:12],
    )

    def start(fs: FakeFS) -> EvilServer:
        server = EvilServer(host_key, fs)
        servers.append(server)
        ev.known_hosts_line = f"[127.0.0.1]:{server.port} ssh-ed25519 {host_key.get_base64()}"
        ev.known_hosts.write_text(ev.known_hosts_line + "\n")
        ev.inventory.write_text(
            "all:\n"
            "  hosts:\n"
            "    evil:\n"
            "      ansible_host: 127.0.0.1\n"
            f"      ansible_port: {server.port}\n"
            "      ansible_user: test\n"
            f"      ansible_ssh_common_args: -o UserKnownHostsFile={ev.known_hosts}\n"
        )
        return server

    ev.start = start
    try:
        yield ev
    finally:
        for server in servers:
            server.close()
        for path in (ev.tmp_escape, ev.etc_escape, f"/tmp/remoteops-outside-{ev.esc}"):
            p = Path(path)
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
        for server in servers:
            assert not server.errors, server.errors


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "100000"  # log lines on stderr are not wrapped
    return env


def run_get(ev: Evil, *args: str, verbose: bool = False) -> Any:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "remoteops",
            "--no-log-file",
            *(["-v"] if verbose else []),
            "get",
            "evil",
            "-i",
            str(ev.inventory),
            "--key",
            str(ev.client_key),
            "--no-ssh-config",
            "--json",
            "--connect-timeout",
            "10",
            "-t",
            "60",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_env(),
    )


def parse(stdout: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    hosts = {obj["host"]: obj for obj in lines if obj["type"] == "host"}
    (summary,) = [obj for obj in lines if obj["type"] == "summary"]
    return hosts, summary


# --------------------------------------------------------------------------- snapshots


Snapshot = dict[str, tuple[Any, ...]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root`` (not following symlinks) with what identifies its state."""
    out: Snapshot = {}
    for current, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = os.path.join(current, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                out[path] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                out[path] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                out[path] = (
                    "file",
                    info.st_mode,
                    info.st_size,
                    info.st_mtime_ns,
                    info.st_ino,
                    info.st_nlink,
                )
    return out


def changed_outside(before: Snapshot, after: Snapshot, allowed: Path) -> list[str]:
    prefix = str(allowed)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    return sorted(p for p in changed if p != prefix and not p.startswith(prefix + os.sep))


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def assert_contained(ev: Evil, before: Snapshot, *, planted: tuple[Path, ...] = ()) -> None:
    after = snapshot(ev.tmp)
    assert changed_outside(before, after, ev.host_dir) == []
    for path in (ev.tmp_escape, ev.etc_escape):
        assert not os.path.lexists(path), f"{path} was created"
        assert not os.path.lexists(path + ".log"), f"{path}.log was created"
    assert leftovers(ev.local) == []
    # Nothing in LOCAL_DIR/evil is a symlink or a special file: only dirs and regular files.
    if ev.host_dir.exists():
        for p in ev.host_dir.rglob("*"):
            if p in planted:
                continue
            mode = p.lstat().st_mode
            assert stat.S_ISDIR(mode) or stat.S_ISREG(mode), p
            assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), p


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    fs: FakeFS
    remotes: list[str]
    good: dict[str, bytes]  # remote path -> content expected at LOCAL_DIR/evil/<path>
    refused: list[str]  # names that must be reported as failures
    skipped: list[str] = field(default_factory=list)  # names reported as warnings
    absent: list[str] = field(default_factory=list)  # relative paths that must not exist


def _bad_names(esc: str) -> list[str]:
    return [
        f"../escape-{esc}",
        f"../../../../escape-{esc}",
        f"../../../../../../../../../../../../tmp/remoteops-escape-{esc}",
        f"/etc/evil-{esc}",
        f"/tmp/remoteops-escape-{esc}",
        "a/b",
        "ok\nname",
        "..\\..\\win",
        "tab\there",
        "",
    ]


def scenario_names(esc: str) -> Scenario:
    bad = _bad_names(esc)
    entries = [(name, file()) for name in bad] + [("good.txt", file(GOOD))]
    fs = FakeFS({"/": folder(("data", folder())), "/data": folder(*entries)})
    return Scenario(fs, ["/data"], {"/data/good.txt": GOOD}, refused=bad, absent=["data/a"])


def scenario_file_is_dir(esc: str) -> Scenario:
    report = folder(
        (f"../../outside-{esc}", file()),
        (f"../../../../../../../../../../../../tmp/remoteops-escape-{esc}", file()),
        ("good.txt", file(GOOD)),
    )
    fs = FakeFS({"/data": folder(("report.txt", report)), "/data/report.txt": report})
    return Scenario(
        fs,
        ["/data/report.txt"],
        {"/data/report.txt/good.txt": GOOD},
        refused=[f"../../outside-{esc}", "tmp/remoteops-escape"],
    )


def _symlink_fs(esc: str) -> FakeFS:
    data = folder(
        ("good.txt", file(GOOD)),
        ("link", link("/etc/passwd")),
        ("link2", link(f"../../../../tmp/remoteops-escape-{esc}")),
    )
    return FakeFS(
        {
            "/data": data,
            "/data/good.txt": data.children[0][1],
            "/data/link": data.children[1][1],
            "/data/link2": data.children[2][1],
        }
    )


def scenario_symlinks_tree(esc: str) -> Scenario:
    return Scenario(
        _symlink_fs(esc),
        ["/data"],
        {"/data/good.txt": GOOD},
        refused=[],
        skipped=["/data/link", "/data/link2"],
        absent=["data/link", "data/link2"],
    )


def scenario_symlinks_glob(esc: str) -> Scenario:
    return Scenario(
        _symlink_fs(esc),
        ["/data/*"],
        {"/data/good.txt": GOOD},
        refused=[],
        skipped=["/data/link", "/data/link2"],
        absent=["data/link", "data/link2"],
    )


def scenario_glob(esc: str) -> Scenario:
    names = [
        f"../escape-{esc}.log",
        f"../../../../../../../../../../../../tmp/remoteops-escape-{esc}.log",
        f"/etc/evil-{esc}.log",
        "a/b.log",
        "..\\x.log",
        "bad\n.log",
    ]
    entries = [(n, file()) for n in names] + [("ok.log", file(GOOD)), ("x.txt", file())]
    fs = FakeFS({"/data": folder(*entries)})
    return Scenario(fs, ["/data/*.log"], {"/data/ok.log": GOOD}, refused=names)


def scenario_glob_middle(esc: str) -> Scenario:
    data = folder(("ok.log", file(GOOD)))
    up = folder(("ok.log", file()))
    root = folder(("data", data), (f"../../../escape-{esc}", up), ("a/data", data))
    fs = FakeFS({"/": root, "/data": data})
    return Scenario(fs, ["/*/*.log"], {"/data/ok.log": GOOD}, refused=[f"escape-{esc}", "a/data"])


def scenario_realpath_absolute(esc: str) -> Scenario:
    fs = FakeFS(
        {"/tmp/remoteops-escape-" + esc + "/notes.txt": file(GOOD)},
        realpath=f"/../../../../../../../../tmp/remoteops-escape-{esc}",
    )
    return Scenario(fs, ["notes.txt"], {f"/tmp/remoteops-escape-{esc}/notes.txt": GOOD}, refused=[])


def scenario_realpath_dotdot(esc: str) -> Scenario:
    fs = FakeFS(
        {"/tmp/remoteops-escape-" + esc + "/notes.txt": file(GOOD)},
        realpath=f"/home/test/../../../../../../../../tmp/remoteops-escape-{esc}",
    )
    return Scenario(fs, ["notes.txt"], {f"/tmp/remoteops-escape-{esc}/notes.txt": GOOD}, refused=[])


def scenario_setuid(esc: str) -> Scenario:
    data = folder(
        ("good.txt", file(GOOD, 0o6755)),
        ("sticky.txt", file(GOOD, 0o1644)),
        ("plain.txt", file(GOOD, 0o640)),
    )
    fs = FakeFS({"/data": data})
    return Scenario(
        fs,
        ["/data"],
        {"/data/good.txt": GOOD, "/data/sticky.txt": GOOD, "/data/plain.txt": GOOD},
        refused=[],
    )


def scenario_setuid_named(esc: str) -> Scenario:
    fs = FakeFS({"/data/good.txt": file(GOOD, 0o6755)})
    return Scenario(fs, ["/data/good.txt"], {"/data/good.txt": GOOD}, refused=[])


SCENARIOS: dict[str, Callable[[str], Scenario]] = {
    "names": scenario_names,
    "file-is-dir": scenario_file_is_dir,
    "symlinks-tree": scenario_symlinks_tree,
    "symlinks-glob": scenario_symlinks_glob,
    "glob-names": scenario_glob,
    "glob-middle": scenario_glob_middle,
    "realpath-absolute": scenario_realpath_absolute,
    "realpath-dotdot": scenario_realpath_dotdot,
    "setuid-tree": scenario_setuid,
    "setuid-named": scenario_setuid_named,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_malicious_server_writes_nothing_outside_host_dir(evil: Evil, name: str) -> None:
    sc = SCENARIOS[name](evil.esc)
    evil.start(sc.fs)
    before = snapshot(evil.tmp)
    result = run_get(evil, *sc.remotes, str(evil.local))
    out = result.stdout + result.stderr
    assert_contained(evil, before)
    hosts, summary = parse(result.stdout)
    host = hosts["evil"]
    # The legit files arrived intact, with setuid/setgid/sticky dropped.
    for remote, content in sc.good.items():
        local = evil.host_dir / remote.lstrip("/")
        assert local.read_bytes() == content, out
        node = sc.fs.lookup(remote)
        assert node is not None
        assert stat.S_IMODE(local.stat().st_mode) == node.mode & 0o777, out
    assert host["files"] == len(sc.good), out
    for rel in sc.absent:
        assert not os.path.lexists(evil.host_dir / rel), rel
    # Every refused name is counted and the host failed (exit 5); the first is named.
    if sc.refused:
        assert host["status"] == "failed", out
        assert host["failed_files"] == len(sc.refused), out
        assert "refused" in host["error"], out
        assert result.returncode == 5, out
        assert summary["exit_code"] == 5
    else:
        assert host["status"] == "ok", out
        assert result.returncode == 0, out
    for path in sc.skipped:
        assert any(path in w for w in host["warnings"]), out
    assert host["skipped"] == len(sc.skipped), out


def test_a_tree_from_a_host_refusing_exec_comes_over_sftp(evil: Evil) -> None:
    """The listing and the tar stream of a bulk get are refused: SFTP fetches every file."""
    files = {f"f{i:02d}.txt": GOOD * (i + 1) for i in range(40)}
    fs = FakeFS({"/data": folder(*((n, file(d, 0o640)) for n, d in files.items()))})
    evil.start(fs)
    before = snapshot(evil.tmp)
    result = run_get(evil, "/data", str(evil.local))
    out = result.stdout + result.stderr
    assert_contained(evil, before)
    assert result.returncode == 0, out
    assert parse(result.stdout)[0]["evil"]["files"] == len(files), out
    for name, content in files.items():
        assert (evil.host_dir / "data" / name).read_bytes() == content
    assert any(command.startswith(b"printf") and b"find" in command for command in fs.execs)


def test_every_refused_name_is_reported(evil: Evil) -> None:
    """The JSON counts them and names the first; with -v each one is logged on stderr."""
    sc = scenario_names(evil.esc)
    evil.start(sc.fs)
    result = run_get(evil, *sc.remotes, str(evil.local), verbose=True)
    hosts, _ = parse(result.stdout)
    host = hosts["evil"]
    assert host["failed_files"] == len(sc.refused)
    assert repr(sc.refused[0]) in host["error"]
    for name in sc.refused:
        assert f"refused the name {name!r}" in result.stderr, (name, result.stderr)


def test_every_refused_name_is_in_the_json(evil: Evil) -> None:
    """Scripts read --json only: each failed file should be listed there, not just counted."""
    sc = scenario_names(evil.esc)
    evil.start(sc.fs)
    result = run_get(evil, *sc.remotes, str(evil.local))
    hosts, _ = parse(result.stdout)
    shown = json.dumps(hosts["evil"])
    missing = [n for n in sc.refused if json.dumps(repr(n))[1:-1] not in shown]
    assert missing == [], shown


def test_symlink_named_on_command_line_is_followed_into_its_own_name(evil: Evil) -> None:
    """`get evil /data/link2`: followed like cp, but lands as LOCAL_DIR/evil/data/link2."""
    evil.start(_symlink_fs(evil.esc))
    before = snapshot(evil.tmp)
    result = run_get(evil, "/data/link2", str(evil.local))
    assert_contained(evil, before)
    assert result.returncode == 0, result.stdout + result.stderr
    got = evil.host_dir / "data" / "link2"
    assert got.is_file()
    assert not got.is_symlink()


def test_realpath_relative_answer_does_not_escape(evil: Evil) -> None:
    """A server whose home is a relative `../../..` path: refused or kept inside, never out."""
    fs = FakeFS({}, realpath=f"../../../../../../../../tmp/remoteops-escape-{evil.esc}")
    fs.any_file = True
    evil.start(fs)
    before = snapshot(evil.tmp)
    result = run_get(evil, "notes.txt", "sub/*.txt", str(evil.local))
    out = result.stdout + result.stderr
    assert_contained(evil, before)
    hosts, _ = parse(result.stdout)
    assert hosts["evil"]["status"] in ("ok", "failed"), out
    assert "internal error" not in out


def test_non_utf8_names_are_refused_not_a_crash(evil: Evil) -> None:
    """A real server can hold names that are not UTF-8; they must fail alone, not the host."""
    data = folder((b"bad-\xff-name", file()), ("good.txt", file(GOOD)))
    evil.start(FakeFS({"/data": data}))
    before = snapshot(evil.tmp)
    result = run_get(evil, "/data", str(evil.local))
    out = result.stdout + result.stderr
    assert_contained(evil, before)
    hosts, _ = parse(result.stdout)
    host = hosts["evil"]
    assert "internal error" not in out
    assert "Traceback" not in out
    assert result.returncode == 5, out
    assert host["status"] == "failed", out
    assert (evil.host_dir / "data" / "good.txt").read_bytes() == GOOD, out


def test_non_utf8_realpath_is_an_error_not_a_crash(evil: Evil) -> None:
    evil.start(FakeFS({}, realpath=b"/home/\xfftest", any_file=True))
    before = snapshot(evil.tmp)
    result = run_get(evil, "notes.txt", str(evil.local))
    out = result.stdout + result.stderr
    assert_contained(evil, before)
    assert "internal error" not in out
    assert result.returncode == 5, out


def test_directory_cycle_is_bounded(evil: Evil) -> None:
    """A directory that contains itself: the walk stops (depth limit), nothing escapes."""
    loop = folder()
    loop.children = [("loop", loop), ("good.txt", file(GOOD))]
    paths = {"/data": loop}
    path = "/data"
    for _ in range(300):
        path += "/loop"
        paths[path] = loop
    evil.start(FakeFS(paths))
    before = snapshot(evil.tmp)
    start = time.monotonic()
    result = run_get(evil, "/data", str(evil.local))
    out = result.stdout + result.stderr
    assert time.monotonic() - start < 100, out
    assert_contained(evil, before)
    hosts, _ = parse(result.stdout)
    assert hosts["evil"]["status"] == "failed", out
    assert "deeper than" in out
    good = evil.host_dir / "data" / "good.txt"
    assert good.is_file(), out
    assert good.read_bytes() == GOOD


def test_lying_huge_size_fails_fast_without_a_huge_local_file(evil: Evil) -> None:
    """stat says 1 TiB, the server sends 13 bytes: the file fails, nothing is kept."""
    data = folder(("huge.bin", Node("file", data=GOOD, size=1 << 40)), ("good.txt", file(GOOD)))
    evil.start(FakeFS({"/data": data}))
    before = snapshot(evil.tmp)
    start = time.monotonic()
    result = run_get(evil, "/data", str(evil.local))
    out = result.stdout + result.stderr
    assert time.monotonic() - start < 60, out
    assert_contained(evil, before)
    hosts, _ = parse(result.stdout)
    assert hosts["evil"]["status"] == "failed", out
    assert "huge.bin" in hosts["evil"]["error"], out
    assert not (evil.host_dir / "data" / "huge.bin").exists()
    assert (evil.host_dir / "data" / "good.txt").read_bytes() == GOOD


def test_same_name_as_file_and_directory_stays_inside(evil: Evil) -> None:
    """A listing with `dup` twice, once a file and once a directory: one fails, none escapes."""
    dup_dir = folder(("inner.txt", file(GOOD)))
    data = folder(("dup", file(GOOD)), ("dup", dup_dir), ("good.txt", file(GOOD)))
    evil.start(FakeFS({"/data": data, "/data/dup": dup_dir}))
    before = snapshot(evil.tmp)
    result = run_get(evil, "/data", str(evil.local))
    out = result.stdout + result.stderr
    assert_contained(evil, before)
    assert "internal error" not in out
    assert (evil.host_dir / "data" / "good.txt").read_bytes() == GOOD


# --------------------------------------------------------------------------- planted local links


def _good_fs() -> FakeFS:
    return FakeFS({"/data": folder(("good.txt", file(GOOD))), "/data/good.txt": file(GOOD)})


@pytest.fixture
def outside(evil: Evil) -> Path:
    path = Path(f"/tmp/remoteops-outside-{evil.esc}")
    path.mkdir()
    (path / "victim").write_bytes(b"original\n")
    return path


def _outside_state(path: Path) -> Snapshot:
    state = snapshot(path)
    state["victim-content"] = ((path / "victim").read_bytes(),)
    return state


@pytest.mark.parametrize("remote", ["/data/good.txt", "/data", "/data/*.txt"])
def test_planted_directory_symlink_is_not_written_through(
    evil: Evil, outside: Path, remote: str
) -> None:
    evil.start(_good_fs())
    evil.host_dir.mkdir()
    (evil.host_dir / "data").symlink_to(outside)
    before, before_out = snapshot(evil.tmp), _outside_state(outside)
    result = run_get(evil, remote, str(evil.local))
    out = result.stdout + result.stderr
    assert _outside_state(outside) == before_out, out
    assert_contained(evil, before, planted=(evil.host_dir / "data",))
    hosts, _ = parse(result.stdout)
    assert hosts["evil"]["status"] == "failed", out
    assert result.returncode == 5, out
    assert "symlink" in hosts["evil"]["error"] or "not a directory" in hosts["evil"]["error"]
    assert (evil.host_dir / "data").is_symlink()


def test_planted_host_dir_symlink_is_not_written_through(evil: Evil, outside: Path) -> None:
    evil.start(_good_fs())
    evil.host_dir.symlink_to(outside)
    before_out = _outside_state(outside)
    result = run_get(evil, "/data/good.txt", str(evil.local))
    out = result.stdout + result.stderr
    assert _outside_state(outside) == before_out, out
    assert not os.path.lexists(outside / "data")
    hosts, _ = parse(result.stdout)
    assert hosts["evil"]["status"] == "failed", out
    assert result.returncode == 5, out


def test_planted_file_symlink_is_replaced_not_followed(evil: Evil, outside: Path) -> None:
    evil.start(_good_fs())
    (evil.host_dir / "data").mkdir(parents=True)
    (evil.host_dir / "data" / "good.txt").symlink_to(outside / "victim")
    before_out = _outside_state(outside)
    result = run_get(evil, "/data/good.txt", str(evil.local))
    out = result.stdout + result.stderr
    assert _outside_state(outside) == before_out, out
    got = evil.host_dir / "data" / "good.txt"
    assert not got.is_symlink()
    assert got.read_bytes() == GOOD
    assert result.returncode == 0, out


@pytest.mark.parametrize("flags", [[], ["--checksum"], ["--verify"], ["--resume"]])
def test_planted_hard_link_is_replaced_not_written_through(
    evil: Evil, outside: Path, flags: list[str]
) -> None:
    evil.start(_good_fs())
    (evil.host_dir / "data").mkdir(parents=True)
    os.link(outside / "victim", evil.host_dir / "data" / "good.txt")
    before_out = _outside_state(outside)
    result = run_get(evil, "/data/good.txt", str(evil.local), *flags)
    out = result.stdout + result.stderr
    state = _outside_state(outside)
    state.pop(str(outside / "victim"))  # its link count drops: that is fine
    before_out.pop(str(outside / "victim"))
    assert state == before_out, out
    assert (evil.host_dir / "data" / "good.txt").read_bytes() == GOOD, out
    assert result.returncode == 0, out


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_planted_resume_part_file_is_not_written_through(
    evil: Evil, outside: Path, kind: str
) -> None:
    """--resume reuses .NAME.remoteops.part: a link planted there must not be written through."""
    evil.start(_good_fs())
    (evil.host_dir / "data").mkdir(parents=True)
    part = evil.host_dir / "data" / ".good.txt.remoteops.part"
    if kind == "symlink":
        part.symlink_to(outside / "victim")
    else:
        os.link(outside / "victim", part)
    victim = (outside / "victim").read_bytes()
    result = run_get(evil, "/data/good.txt", str(evil.local), "--resume")
    out = result.stdout + result.stderr
    assert (outside / "victim").read_bytes() == victim, out
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]


# --------------------------------------------------------------------------- with a real lab


def test_healthy_lab_hosts_are_unaffected_by_an_evil_one(
    lab: Lab, remote_dir: str, evil: Evil
) -> None:
    bad = _bad_names(evil.esc)
    entries = [(name, file()) for name in bad] + [("good.txt", file(GOOD))]
    server = evil.start(FakeFS({remote_dir: folder(*entries)}))
    for host in lab.hosts:
        (lab.host_path(host.name, remote_dir) / "good.txt").write_bytes(host.name.encode())
    known = evil.tmp / "mixed_known_hosts"
    known.write_text(lab.known_hosts.read_text() + evil.known_hosts_line + "\n")
    text = lab.inventory.read_text().replace(str(lab.known_hosts), str(known))
    text += (
        "    evilgroup:\n"
        "      hosts:\n"
        f"        evil: {{ansible_host: 127.0.0.1, ansible_port: {server.port}, "
        "ansible_user: test}\n"
    )
    inventory = evil.tmp / "mixed.yml"
    inventory.write_text(text)
    before = snapshot(evil.tmp)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "remoteops",
            "--no-log-file",
            "get",
            "all",
            "-i",
            str(inventory),
            "--no-ssh-config",
            "--json",
            "-t",
            "60",
            remote_dir,
            str(evil.local),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_env(),
    )
    out = result.stdout + result.stderr
    assert result.returncode == 5, out
    hosts, summary = parse(result.stdout)
    assert hosts["evil"]["status"] == "failed", out
    assert hosts["evil"]["failed_files"] == len(bad), out
    assert (evil.host_dir / remote_dir.lstrip("/") / "good.txt").read_bytes() == GOOD
    for host in lab.hosts:
        obj = hosts[host.name]
        assert obj["status"] == "ok", out
        assert obj["files"] == 1
        got = evil.local / host.name / remote_dir.lstrip("/") / "good.txt"
        assert got.read_bytes() == host.name.encode()
    assert summary["ok"] == len(lab.hosts)
    # Only LOCAL_DIR/<host>/ trees changed.
    after = snapshot(evil.tmp)
    allowed = {str(evil.local / h.name) for h in lab.hosts} | {str(evil.host_dir)}
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    stray = [p for p in changed if not any(p == a or p.startswith(a + os.sep) for a in allowed)]
    assert stray == []
    for path in (evil.tmp_escape, evil.etc_escape):
        assert not os.path.lexists(path)
    assert leftovers(evil.local) == []


def test_non_utf8_name_on_a_real_sshd_fails_one_file_not_the_host(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    """Not even malicious: OpenSSH serves Latin-1 names as they are on disk."""
    host = lab.hosts[0]
    where = lab.host_path(host.name, remote_dir)
    (where / "good.txt").write_bytes(GOOD)
    fd = os.open(bytes(where) + b"/caf\xe9.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"latin-1 name\n")
    os.close(fd)
    local = tmp_path / "fetched"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "remoteops",
            "--no-log-file",
            "get",
            host.name,
            "-i",
            str(lab.inventory),
            "--json",
            remote_dir,
            str(local),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_env(),
    )
    out = result.stdout + result.stderr
    assert "internal error" not in out
    assert (local / host.name / remote_dir.lstrip("/") / "good.txt").read_bytes() == GOOD, out
    assert result.returncode == 5, out

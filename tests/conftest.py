"""Shared fixtures: a lab of real sshd servers, brought up once per test session."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from remoteops.lab import Lab, find_sshd, lab_down, lab_up

LAB_HOSTS = int(os.environ.get("REMOTEOPS_TEST_LAB_HOSTS", "6"))


def _free_port() -> int:
    """A port free on 127.66.0.1 and its neighbours (the lab binds port and port+1)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < 65000:
            return port
    raise RuntimeError("no free port found")


def _require_sshd() -> None:
    if find_sshd() is None:
        if os.environ.get("CI"):
            pytest.fail("sshd is missing in CI: .ci/run must install openssh-server")
        pytest.skip("OpenSSH's sshd is not installed (apt-get install openssh-server)")
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root; the lab needs namespaces")
        pytest.skip("the test lab needs root for its namespaces")


# --------------------------------------------------------------------------- hermetic


@pytest.fixture(scope="session", autouse=True)
def hermetic_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads this machine's config files or writes its run history.

    The config files (docs/config.md) are named /dev/null, "read none", and the
    state directory (history, default log file) is one of the session's own, for
    the tests and every CLI they start; a test that is about these sets its own.
    """
    state = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REMOTEOPS_CONFIG", os.devnull)
        patch.setenv("REMOTEOPS_SYSTEM_CONFIG", os.devnull)
        patch.setenv("XDG_STATE_HOME", str(state))
        patch.delenv("REMOTEOPS_PROFILE", raising=False)
        yield


# --------------------------------------------------------------------------- fast paths

FAST_PATH_MODES = ("fast-paths", "no-fast-paths")


def _runs_both_ways(module: object) -> bool:
    """The transfer tests (tests/integration/test_transfer*.py) run with and without fast paths."""
    name = getattr(module, "__name__", "")
    return name.startswith("tests.integration.test_transfer")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if _runs_both_ways(metafunc.module) and "fast_paths" in metafunc.fixturenames:
        metafunc.parametrize("fast_paths", FAST_PATH_MODES, indirect=True)


@pytest.fixture(autouse=True)
def fast_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether this test runs with remoteops' fast paths (``REMOTEOPS_NO_FAST_PATHS``).

    Every transfer test runs twice, as ``[fast-paths]`` and ``[no-fast-paths]``,
    so each guarantee holds on both the tar/cat streams and plain SFTP; other
    tests run once, as the environment says. The variable reaches both the
    code under test in this process and the CLI the test starts.
    """
    mode = getattr(request, "param", None)
    if mode == "no-fast-paths":
        monkeypatch.setenv("REMOTEOPS_NO_FAST_PATHS", "1")
    elif mode == "fast-paths":
        monkeypatch.delenv("REMOTEOPS_NO_FAST_PATHS", raising=False)
    from remoteops import fastpaths

    return fastpaths.enabled()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab of LAB_HOSTS isolated hosts, torn down at the end of the session."""
    _require_sshd()
    lab_dir = tmp_path_factory.mktemp("lab")
    report = lab_up(lab_dir, hosts=LAB_HOSTS, port=_free_port())
    try:
        yield report.lab
    finally:
        lab_down(lab_dir)


@pytest.fixture
def remote_dir(lab: Lab) -> Iterator[str]:
    """A fresh directory /tmp/t-<id> on every lab host, owned by the lab user."""
    import pwd

    entry = pwd.getpwnam(lab.user)
    name = f"/tmp/t-{uuid.uuid4().hex[:10]}"
    local_dirs = []
    for host in lab.hosts:
        local = lab.host_path(host.name, name)
        local.mkdir()
        os.chown(local, entry.pw_uid, entry.pw_gid)
        local_dirs.append(local)
    try:
        yield name
    finally:
        for local in local_dirs:
            shutil.rmtree(local, ignore_errors=True)


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[list[Path]]:
    """Directories of extra labs a test starts; all torn down after the test."""
    _require_sshd()
    dirs: list[Path] = []
    try:
        yield dirs
    finally:
        for lab_dir in dirs:
            if (lab_dir / "lab.json").exists():
                lab_down(lab_dir)


def free_port() -> int:
    """Public helper for tests that start their own lab."""
    return _free_port()

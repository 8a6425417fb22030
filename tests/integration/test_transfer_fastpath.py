"""The bulk-data fast paths against the lab's real sshd: `cat` streams and FastPacketizer.

Large puts go through ``cat >> TEMP`` and large gets through ``cat``/``tail -c``
on exec channels, framed and unframed by ``remoteops.fastio`` when AES-GCM is
in use. These tests check the bytes (large, odd and zero sizes), the
guarantees when the server dies mid-transfer, and the fallbacks: SFTP when the
host has no usable ``cat``, paramiko's own packet path for other ciphers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from pathlib import Path

import pytest

from remoteops import fastio
from remoteops.hostkeys import HostKeyStore
from remoteops.lab import Lab, descendants
from remoteops.session import Credentials, Session, SessionSettings, Watchdog, connect
from remoteops.target import Target
from remoteops.transfer.streams import _append_command
from tests.helpers import run_cli as cli
from tests.integration.test_transfer import (
    chown_lab,
    get,
    json_lines,
    kill_connections,
    leftovers,
    put,
    replaced_by_false,
    run_interrupted,
    tiny_tmpfs,  # noqa: F401 (a fixture)
)

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
BIG = 64 * MIB + 4099  # over the stream threshold, not a multiple of any block size


def _commands(lab: Lab, host: str) -> int:
    time.sleep(0.2)  # sshd writes its log line after the session starts
    return lab.sshd_log(host).read_text().count("Starting session: command")


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _big_source(tmp_path: Path) -> tuple[bytes, Path]:
    """BIG random bytes and the local file big.bin holding them."""
    data = os.urandom(BIG)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    return data, src


# --------------------------------------------------------------------------- put


def test_large_put_streams_through_cat_byte_identical(
    lab: Lab, remote_dir: str, tmp_path: Path, fast_paths: bool
) -> None:
    host = lab.hosts[0].name
    data, src = _big_source(tmp_path)
    src.chmod(0o640)
    before = _commands(lab, host)
    result = put(lab, str(src), f"{remote_dir}/", pattern=host)
    assert result.returncode == 0, result.stdout + result.stderr
    hosts, _ = json_lines(result.stdout)
    assert (hosts[host]["files"], hosts[host]["bytes"]) == (1, BIG)
    remote = lab.host_path(host, f"{remote_dir}/big.bin")
    assert _sha(remote.read_bytes()) == _sha(data)
    assert remote.stat().st_mode & 0o7777 == 0o640
    assert not leftovers(lab.host_path(host, remote_dir))
    # Without --verify the only command session is the `cat` that carried the bytes
    # (SFTP alone with the fast paths off).
    assert _commands(lab, host) == before + fast_paths

    again = put(lab, "--verify", "--checksum", str(src), f"{remote_dir}/", pattern=host)
    assert json_lines(again.stdout)[0][host]["unchanged"] == 1


def test_disk_full_mid_stream_fails_naming_the_file_and_removes_it(
    lab: Lab,
    tiny_tmpfs: str,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    host = lab.hosts[0].name
    _, src = _big_source(tmp_path)
    result = put(lab, str(src), f"{tiny_tmpfs}/", pattern=host)
    assert result.returncode == 5, result.stdout + result.stderr
    error = json_lines(result.stdout)[0][host]["error"]
    assert "No space left on device" in error
    assert f"remote {tiny_tmpfs}/" in error
    assert list(lab.host_path(host, tiny_tmpfs).iterdir()) == []  # temporary file removed


def test_large_put_resumes_and_verifies_through_the_stream(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    host = lab.hosts[0].name
    data, src = _big_source(tmp_path)
    final = lab.host_path(host, f"{remote_dir}/big.bin")
    part = lab.host_path(host, f"{remote_dir}/.big.bin.remoteops.part")
    for keep in (1, BIG // 3):
        final.unlink(missing_ok=True)
        part.write_bytes(data[:keep])
        chown_lab(lab, part)
        result = put(lab, "--resume", "--verify", str(src), f"{remote_dir}/", pattern=host)
        assert result.returncode == 0, result.stdout + result.stderr
        assert json_lines(result.stdout)[0][host]["bytes"] == BIG - keep
        assert _sha(final.read_bytes()) == _sha(data)
        assert not part.exists()


@pytest.mark.parametrize("size", [0, 1, 65_535, 64 * MIB - 1, 64 * MIB, 64 * MIB + 1])
def test_put_and_get_round_trip_of_assorted_sizes(
    lab: Lab, remote_dir: str, tmp_path: Path, size: int
) -> None:
    host = lab.hosts[1].name
    data = os.urandom(size)
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    result = put(lab, str(src), f"{remote_dir}/", pattern=host)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab.host_path(host, f"{remote_dir}/f.bin").read_bytes() == data
    out = tmp_path / "out"
    back = get(lab, f"{remote_dir}/f.bin", str(out), pattern=host)
    assert back.returncode == 0, back.stdout + back.stderr
    local = out / host / remote_dir.lstrip("/") / "f.bin"
    assert local.read_bytes() == data
    assert json_lines(back.stdout)[0][host]["bytes"] == size
    assert not leftovers(out)


def test_large_put_and_get_fall_back_to_sftp_without_cat(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    data, src = _big_source(tmp_path)
    out = tmp_path / "out"
    with replaced_by_false(lab, 2, "cat") as host:
        result = put(lab, str(src), f"{remote_dir}/", pattern=host)
        back = get(lab, f"{remote_dir}/big.bin", str(out), pattern=host)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json_lines(result.stdout)[0][host]["bytes"] == BIG
    assert _sha(lab.host_path(host, f"{remote_dir}/big.bin").read_bytes()) == _sha(data)
    assert back.returncode == 0, back.stdout + back.stderr
    assert json_lines(back.stdout)[0][host]["bytes"] == BIG
    assert _sha((out / host / remote_dir.lstrip("/") / "big.bin").read_bytes()) == _sha(data)
    assert not leftovers(out)
    assert not leftovers(lab.host_path(host, remote_dir))


def test_the_append_command_refuses_a_symlink_in_place_of_the_temporary_file(
    lab: Lab, remote_dir: str
) -> None:
    session, watchdog = _session(lab, 5, [])
    try:
        host = session.target.name
        victim = lab.host_path(host, f"{remote_dir}/victim")
        victim.write_bytes(b"keep me\n")
        chown_lab(lab, victim)
        temp = lab.host_path(host, f"{remote_dir}/.f.remoteops-x.part")
        temp.symlink_to(victim)
        result = session.exec(_append_command(f"{remote_dir}/.f.remoteops-x.part"), stdin=b"evil")
        assert result.exit_code != 0
        assert victim.read_bytes() == b"keep me\n"
        temp.unlink()
        temp.write_bytes(b"start ")
        chown_lab(lab, temp)
        result = session.exec(_append_command(f"{remote_dir}/.f.remoteops-x.part"), stdin=b"end")
        assert result.exit_code == 0, result.stderr
        assert temp.read_bytes() == b"start end"
    finally:
        session.close()
        watchdog.stop()


def test_large_put_and_get_through_a_jump_host(lab: Lab, remote_dir: str, tmp_path: Path) -> None:
    """Behind ProxyJump the socket is a channel: paramiko's own packet path carries the stream."""
    jump, target = lab.hosts[0], lab.hosts[5]
    option = f"-o UserKnownHostsFile={lab.known_hosts}"
    hop = f"{lab.user}@{jump.address}:{jump.port}"
    inventory = tmp_path / "jump.yml"
    inventory.write_text(lab.inventory.read_text().replace(option, f"{option} -o ProxyJump={hop}"))
    data, src = _big_source(tmp_path)
    out = tmp_path / "out"
    args = ("-i", str(inventory), "--json")
    result = cli("put", target.name, *args, str(src), f"{remote_dir}/", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _sha(lab.host_path(target.name, f"{remote_dir}/big.bin").read_bytes()) == _sha(data)
    back = cli("get", target.name, *args, f"{remote_dir}/big.bin", str(out), timeout=300)
    assert back.returncode == 0, back.stdout + back.stderr
    local = out / target.name / remote_dir.lstrip("/") / "big.bin"
    assert _sha(local.read_bytes()) == _sha(data)


# --------------------------------------------------------------------------- get


def _download_over_an_old_copy(
    lab: Lab, host: str, remote_dir: str, tmp_path: Path
) -> tuple[Path, Path]:
    """A 400 MiB remote huge.bin, and an older local copy where `get` will put it.

    Returns (LOCAL_DIR for `get`, the directory holding the local copy).
    """
    lab.host_path(host, f"{remote_dir}/huge.bin").write_bytes(os.urandom(400 * MIB))
    out = tmp_path / "out"
    local_dir = out / host / remote_dir.lstrip("/")
    local_dir.mkdir(parents=True)
    (local_dir / "huge.bin").write_bytes(b"previous version\n")
    return out, local_dir


def test_killed_sshd_mid_download_keeps_the_old_local_file(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    victim = lab.hosts[3]
    out, local_dir = _download_over_an_old_copy(lab, victim.name, remote_dir, tmp_path)
    argv = ["get", victim.name, "-i", str(lab.inventory), "--json", f"{remote_dir}/huge.bin"]
    returncode, stdout, stderr = run_interrupted(
        [*argv, str(out)], local_dir, 40 * MIB, kill_connections(lab, 3)
    )
    assert returncode == 5, stdout + stderr
    hosts, _ = json_lines(stdout)
    assert hosts[victim.name]["status"] == "failed"
    assert f"remote {remote_dir}/huge.bin" in hosts[victim.name]["error"]
    assert (local_dir / "huge.bin").read_bytes() == b"previous version\n"
    assert leftovers(out) == []


def test_stalled_download_stream_meets_the_deadline_and_cleans_up(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    """sshd frozen mid-stream: -t closes the connection; the old file stays, no temp is left."""
    victim = lab.hosts[4]
    out, local_dir = _download_over_an_old_copy(lab, victim.name, remote_dir, tmp_path)
    frozen: list[int] = []

    def freeze(_: object) -> None:
        for pid in descendants([victim.pid]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                frozen.append(pid)

    argv = ["get", victim.name, "-i", str(lab.inventory), "--json", "-t", "3"]
    try:
        returncode, stdout, stderr = run_interrupted(
            [*argv, f"{remote_dir}/huge.bin", str(out)], local_dir, 20 * MIB, freeze
        )
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
    hosts, _ = json_lines(stdout)
    assert hosts[victim.name]["status"] == "timeout", stdout + stderr
    assert returncode != 0
    assert (local_dir / "huge.bin").read_bytes() == b"previous version\n"
    assert leftovers(out) == []


# --------------------------------------------------------------------------- fastio itself


def _session(lab: Lab, index: int, ciphers_off: list[str]) -> tuple[Session, Watchdog]:
    host = lab.hosts[index]
    target = Target(
        name=host.name,
        address=host.address,
        port=host.port,
        user=lab.user,
        identity_files=(str(lab.client_key),),
        identities_only=True,
        known_hosts_files=(str(lab.known_hosts),),
        strict_host_key_checking="yes",
    )
    watchdog = Watchdog()
    session = connect(
        target,
        store=HostKeyStore([lab.known_hosts]),
        credentials=Credentials(use_agent=False),
        settings=SessionSettings(
            host_key_policy="strict", disabled_algorithms={"ciphers": ciphers_off}
        ),
        watchdog=watchdog,
    )
    return session, watchdog


GCM = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]


@pytest.mark.parametrize(
    ("ciphers_off", "fast"),
    [([], True), (GCM, False)],
    ids=["aes-gcm-fast-path", "other-cipher-paramiko-path"],
)
@pytest.mark.parametrize("rekey", [False, True], ids=["", "rekeying"])
def test_fastio_streams_both_ways(
    lab: Lab,
    remote_dir: str,
    ciphers_off: list[str],
    fast: bool,
    rekey: bool,
    fast_paths: bool,
) -> None:
    """send_all and read_chunks move bytes intact, with paramiko's path as the fallback.

    With ``rekeying`` the session re-keys every 2 MiB, many times mid-stream.
    With the fast paths off the transport has paramiko's own packetizer.
    """
    session, watchdog = _session(lab, 4, ciphers_off)
    try:
        packetizer = session.transport.packetizer
        assert isinstance(packetizer, fastio.CountingPacketizer)
        assert isinstance(packetizer, fastio.FastPacketizer) is fast_paths
        if isinstance(packetizer, fastio.FastPacketizer):
            assert packetizer.can_send_fast() is fast
        if rekey:
            packetizer.REKEY_BYTES = 2 * MIB  # type: ignore[misc]
        data = os.urandom(24 * MIB + 13)
        path = f"{remote_dir}/stream.bin"
        channel = session.open_stream(f"cat > {path}", stdin=True)
        try:
            fastio.send_all(channel, data)
            channel.shutdown_write()
            assert channel.recv_exit_status() == 0
        finally:
            fastio.detach(channel)
            channel.close()
        assert _sha(lab.host_path(session.target.name, path).read_bytes()) == _sha(data)

        channel = session.open_stream(f"cat {path}")
        got: list[bytes] = []
        try:
            for _ in range(100_000):
                chunks = fastio.read_chunks(channel, 3 * MIB, 5.0)
                assert chunks is not None, "no data for 5 s"
                if not chunks:
                    break
                got += [bytes(c) for c in chunks]
            assert channel.recv_exit_status() == 0
        finally:
            fastio.detach(channel)
            channel.close()
        assert _sha(b"".join(got)) == _sha(data)
        # The session still works for ordinary commands afterwards.
        assert session.exec("echo ok").stdout == b"ok\n"
    finally:
        session.close()
        watchdog.stop()

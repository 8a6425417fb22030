"""known_hosts parsing, checks, the strict/accept-new policies and the concurrent-safe append."""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from remoteops import hostkeys
from remoteops.errors import HostKeyError, UsageError
from remoteops.hostkeys import (
    HostKeyStatus,
    HostKeyStore,
    Marker,
    fingerprint_sha256,
    hash_hostname,
    known_hosts_name,
    load_known_hosts,
    parse_known_hosts,
    verify_host_key,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "known_hosts"
FLEET = DATA / "fleet.known_hosts"
CASES = json.loads((DATA / "cases.json").read_text())["cases"]

needs_ssh_keygen = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="ssh-keygen (OpenSSH client) is not installed"
)


def _pub_key(text: str) -> paramiko.PKey:
    key_type, b64 = text.split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))


def _data_key(name: str) -> paramiko.PKey:
    return _pub_key((DATA / "keys" / f"{name}.pub").read_text())


def _new_ed25519() -> paramiko.Ed25519Key:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    msg = paramiko.Message()
    msg.add_string("ssh-ed25519")
    msg.add_string(raw)
    return paramiko.Ed25519Key(data=msg.asbytes())


def _line(name: str, key: paramiko.PKey) -> bytes:
    return f"{name} {key.get_name()} {key.get_base64()}\n".encode()


def _ssh_keygen_found(name: str, path: Path) -> list[tuple[int, str]]:
    """(line, tag) for each ``# Host NAME found: line N [TAG]`` that ``ssh-keygen -F`` prints."""
    out = subprocess.run(
        ["ssh-keygen", "-F", name, "-f", str(path)], capture_output=True, text=True, check=False
    ).stdout
    found = re.findall(r"^# Host .* found: line (\d+) ?(\S*)", out, flags=re.MULTILINE)
    return [(int(n), tag) for n, tag in found]


# --------------------------------------------------------------------------- parsing


def test_parse_keeps_every_raw_line_and_skips_malformed(caplog: pytest.LogCaptureFixture) -> None:
    data = FLEET.read_bytes()
    caplog.set_level(logging.DEBUG, logger="remoteops.hostkeys")
    parsed = parse_known_hosts(data, source=str(FLEET))

    assert b"".join(parsed.lines) == data
    assert len(parsed.lines) == 17
    assert not parsed.lines[-1].endswith(b"\n")
    assert [e.lineno for e in parsed.entries] == [2, 3, 4, 5, 6, 7, 8, 16, 17]
    skipped = {
        int(m.group(1))
        for r in caplog.records
        if (m := re.search(r"fleet\.known_hosts:(\d+): skipping malformed", r.getMessage()))
    }
    assert skipped == {9, 10, 11, 12, 15}


def test_parse_fields() -> None:
    by_line = {e.lineno: e for e in parse_known_hosts(FLEET.read_bytes()).entries}
    assert by_line[2].patterns == ("web1.example.com", "10.0.0.1")
    assert by_line[2].comment == "web1"
    assert by_line[4].patterns == ("*.db.example.com", "!bad.db.example.com")
    assert by_line[7].marker is Marker.REVOKED
    assert by_line[7].comment == "retired in 2024"
    assert by_line[8].marker is Marker.CERT_AUTHORITY
    assert by_line[6].key_type == "ecdsa-sha2-nistp256"
    assert by_line[16].patterns == ("spaced.example",)
    assert by_line[16].comment == "spaced   comment"
    assert by_line[16].raw.endswith(b"\r\n")
    assert by_line[2].key_blob == _data_key("ed25519_a").asbytes()


def test_parse_never_raises_on_truncated_or_binary_lines() -> None:
    data = FLEET.read_bytes()
    for line in data.splitlines():
        for cut in range(len(line) + 1):
            parse_known_hosts(line[:cut] + b"\n")
    parsed = parse_known_hosts(b"\xff\xfe\x00 ssh-ed25519 \x80\x81\n|1|x|y ssh-ed25519 AAAA\n@\n")
    assert parsed.entries == ()
    assert len(parsed.lines) == 3


def test_pattern_matching_semantics() -> None:
    key = _new_ed25519()
    text = b"".join(
        [
            _line("*.example.com,!secret.example.com", key),
            _line("[*.lab]:2222", key),
            _line("!only.negated", key),
            _line("10.0.0.?", key),
        ]
    )
    entries = parse_known_hosts(text).entries
    assert entries[0].matches("a.example.com")
    assert entries[0].matches("A.EXAMPLE.COM")
    assert not entries[0].matches("secret.example.com")
    assert not entries[0].matches("example.com")
    assert entries[1].matches("[node.lab]:2222")
    assert not entries[1].matches("[node.lab]:22222")
    assert not entries[1].matches("node.lab")
    # `[` is literal in OpenSSH patterns, not a character class
    assert not entries[1].matches("n:2222")
    assert not entries[2].matches("anything")
    assert not entries[2].matches("only.negated")
    assert entries[3].matches("10.0.0.7")
    assert not entries[3].matches("10.0.0.17")


def test_known_hosts_name() -> None:
    assert known_hosts_name("Web1", 22) == "web1"
    assert known_hosts_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"
    assert known_hosts_name("::1", 2222) == "[::1]:2222"


# --------------------------------------------------------------------------- status cases


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_status_cases(case: dict[str, object]) -> None:
    store = HostKeyStore([FLEET])
    host, port, alias = str(case["host"]), int(str(case["port"])), case.get("alias")
    result = store.examine(host, port, _data_key(str(case["key"])), alias=alias)  # type: ignore[arg-type]
    assert result.status is HostKeyStatus(case["status"])
    if "line" in case:
        assert result.entry is not None
        assert result.entry.lineno == case["line"]
    assert list(result.other_types) == case.get("other_types", [])
    assert store.check(host, port, _data_key(str(case["key"])), alias=alias) is result.status  # type: ignore[arg-type]


@needs_ssh_keygen
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_lookup_agrees_with_ssh_keygen_F(case: dict[str, object]) -> None:
    name = str(case.get("alias") or known_hosts_name(str(case["host"]), int(str(case["port"]))))
    parsed = load_known_hosts(FLEET)
    tags = {Marker.NONE: "", Marker.REVOKED: "REVOKED", Marker.CERT_AUTHORITY: "CA"}
    ours = sorted((e.lineno, tags[m]) for m in Marker for e in parsed.lookup(name, marker=m))
    # ssh-keygen -F matches host names without validating keys, so it also lists the lines
    # whose key ssh itself rejects (bad base64, type name not matching the blob)
    usable = {e.lineno for e in parsed.entries}
    assert ours == sorted(f for f in _ssh_keygen_found(name, FLEET) if f[0] in usable)
    assert ours


def test_multiple_files_known_in_any_wins_and_revoked_anywhere(tmp_path: Path) -> None:
    key, other, bad = _new_ed25519(), _new_ed25519(), _new_ed25519()
    user, system = tmp_path / "known_hosts", tmp_path / "ssh_known_hosts"
    user.write_bytes(_line("web1", other) + b"@revoked nosuchhost " + _line("", bad)[1:])
    system.write_bytes(_line("web1", key) + _line("web1", bad))
    store = HostKeyStore([user, system, tmp_path / "missing"])
    assert store.check("web1", 22, key) is HostKeyStatus.KNOWN
    assert store.check("web1", 22, _new_ed25519()) is HostKeyStatus.CHANGED
    assert store.check("web1", 22, bad) is HostKeyStatus.REVOKED
    assert store.check("web2", 22, key) is HostKeyStatus.UNKNOWN
    assert store.known_key_types("web1", 22) == ["ssh-ed25519"]
    assert [e.source for e in store.lookup("web1", 22)] == [str(user), str(system), str(system)]


def test_files_are_parsed_once_per_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = _new_ed25519()
    path = tmp_path / "known_hosts"
    path.write_bytes(b"".join(_line(f"host{i}", _new_ed25519()) for i in range(200)))
    calls: list[str] = []
    real_parse = hostkeys.parse_known_hosts

    def counting(data: bytes, *, source: str = "<memory>") -> hostkeys.KnownHostsFile:
        calls.append(source)
        return real_parse(data, source=source)

    monkeypatch.setattr(hostkeys, "parse_known_hosts", counting)
    store = HostKeyStore([path])
    statuses = {store.check(f"host{i}", 22, key) for i in range(1000)}
    assert statuses == {HostKeyStatus.CHANGED, HostKeyStatus.UNKNOWN}
    assert len(calls) == 1
    assert load_known_hosts(path) is load_known_hosts(path)

    with path.open("ab") as fh:  # an outside edit is seen at the next check
        fh.write(_line("host999", key))
    assert store.check("host999", 22, key) is HostKeyStatus.KNOWN
    assert len(calls) == 2


def test_a_file_that_appears_or_a_link_that_moves_is_seen_at_the_next_check(
    tmp_path: Path,
) -> None:
    """Checks reuse the parsed file by the path as given, so each must see what is
    there now: a known_hosts created mid-run, a symlink pointed at another file."""
    key = _new_ed25519()
    first, second = tmp_path / "first", tmp_path / "second"
    link = tmp_path / "known_hosts"
    store = HostKeyStore([link])
    assert store.check("web1", 22, key) is HostKeyStatus.UNKNOWN  # missing: empty
    first.write_bytes(_line("web1", key))
    second.write_bytes(_line("web1", _new_ed25519()))
    link.symlink_to(first)
    assert store.check("web1", 22, key) is HostKeyStatus.KNOWN
    assert [e.source for e in store.lookup("web1", 22)] == [str(first)]
    link.unlink()
    link.symlink_to(second)
    assert store.check("web1", 22, key) is HostKeyStatus.CHANGED
    assert [e.source for e in store.lookup("web1", 22)] == [str(second)]
    link.unlink()
    assert store.check("web1", 22, key) is HostKeyStatus.UNKNOWN


def test_plain_names_are_indexed(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    keys = [_new_ed25519() for _ in range(20)]
    path.write_bytes(b"".join(_line(f"h{i}.example", keys[i % 20]) for i in range(20000)))
    store = HostKeyStore([path])
    store.check("h0.example", 22, keys[0])  # parse outside the timing
    start = time.perf_counter()
    for i in range(1000):
        assert store.check(f"h{i}.example", 22, keys[i % 20]) is HostKeyStatus.KNOWN
    # a linear scan would run 20 million pattern matches; the index answers in milliseconds
    assert time.perf_counter() - start < 1.0


def test_default_store_files(tmp_path: Path) -> None:
    mine = HostKeyStore.default(tmp_path / "kh", include_global=False)
    assert mine.files == (str(tmp_path / "kh"),)
    assert mine.write_file == str(tmp_path / "kh")
    ssh = HostKeyStore.default()
    assert ssh.files[0] == os.path.expanduser("~/.ssh/known_hosts")
    assert ssh.write_file == os.path.expanduser("~/.ssh/known_hosts")
    assert "/etc/ssh/ssh_known_hosts" in ssh.files


# --------------------------------------------------------------------------- hashed names


@needs_ssh_keygen
def test_hashed_names_from_ssh_keygen_H(tmp_path: Path) -> None:
    a, b = _new_ed25519(), _new_ed25519()
    path = tmp_path / "known_hosts"
    path.write_bytes(_line("127.0.0.1", a) + _line("[127.0.0.1]:2222", b))
    subprocess.run(["ssh-keygen", "-H", "-f", str(path)], check=True, capture_output=True)
    entries = parse_known_hosts(path.read_bytes()).entries
    assert len(entries) == 2
    assert all(e.is_hashed and e.patterns == () for e in entries)

    store = HostKeyStore([path])
    assert store.check("127.0.0.1", 22, a) is HostKeyStatus.KNOWN
    assert store.check("127.0.0.1", 2222, b) is HostKeyStatus.KNOWN
    assert store.check("127.0.0.1", 2222, a) is HostKeyStatus.CHANGED
    assert store.check("127.0.0.1", 2200, b) is HostKeyStatus.UNKNOWN
    assert store.check("127.0.0.2", 22, a) is HostKeyStatus.UNKNOWN

    assert entries[1].hashed is not None
    host_field = entries[1].raw.split()[0].decode()
    assert hash_hostname("[127.0.0.1]:2222", entries[1].hashed[0]) == host_field


@needs_ssh_keygen
def test_add_hashed_name_is_found_by_ssh_keygen(tmp_path: Path) -> None:
    key = _new_ed25519()
    path = tmp_path / "known_hosts"
    assert HostKeyStore([path]).add("127.0.0.1", 2022, key, hash_name=True)
    assert path.read_bytes().startswith(b"|1|")
    assert _ssh_keygen_found("[127.0.0.1]:2022", path) == [(1, "")]
    assert HostKeyStore([path]).check("127.0.0.1", 2022, key) is HostKeyStatus.KNOWN


# --------------------------------------------------------------------------- fingerprints


@needs_ssh_keygen
def test_fingerprint_matches_ssh_keygen_lf(tmp_path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True
    )
    ed = paramiko.Ed25519Key(filename=str(tmp_path / "id"))
    ec = paramiko.ECDSAKey.generate()
    (tmp_path / "ec.pub").write_text(f"{ec.get_name()} {ec.get_base64()}\n")
    for key, pub in ((ed, tmp_path / "id.pub"), (ec, tmp_path / "ec.pub")):
        out = subprocess.run(
            ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True
        ).stdout
        assert fingerprint_sha256(key) == out.split()[1]
        assert fingerprint_sha256(key).startswith("SHA256:")
        assert not fingerprint_sha256(key).endswith("=")


# --------------------------------------------------------------------------- policy


def test_strict_refuses_unknown_with_fingerprint_and_next_step(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    store = HostKeyStore([path])
    key = _new_ed25519()
    with pytest.raises(HostKeyError) as info:
        verify_host_key(store, "127.0.0.1", 2222, key, "strict")
    msg = str(info.value)
    assert "\n" not in msg
    assert info.value.host == "127.0.0.1"
    assert info.value.exit_code == 4
    assert fingerprint_sha256(key) in msg
    assert f"ssh-keyscan -p 2222 127.0.0.1 >> {path}" in msg
    assert "--host-key-policy accept-new" in msg
    assert not path.exists()
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.host, str(again)) == ("127.0.0.1", msg)


def test_advice_for_a_known_hosts_in_a_missing_directory_works_as_written(
    tmp_path: Path,
) -> None:
    """An inventory naming a known_hosts whose directory was never made (a lab started
    elsewhere): the advice creates the directory, so the command line given runs."""
    path = tmp_path / "lab" / "known_hosts"
    store = HostKeyStore([path])
    with pytest.raises(HostKeyError) as info:
        verify_host_key(store, "127.0.0.1", 2222, _new_ed25519(), "strict")
    advice = re.search(r"run `([^`]*)`", str(info.value))
    assert advice is not None
    assert advice.group(1) == (f"mkdir -p {path.parent} && ssh-keyscan -p 2222 127.0.0.1 >> {path}")
    mkdir, _, _ = advice.group(1).partition(" && ")
    subprocess.run(["sh", "-c", mkdir], check=True)
    assert path.parent.is_dir()


def test_accept_new_records_then_knows(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    store = HostKeyStore([path])
    key = _new_ed25519()
    verify_host_key(store, "127.0.0.1", 2222, key, "accept-new")
    assert path.read_bytes() == _line("[127.0.0.1]:2222", key)
    assert store.check("127.0.0.1", 2222, key) is HostKeyStatus.KNOWN
    verify_host_key(store, "127.0.0.1", 2222, key, "strict")
    verify_host_key(store, "127.0.0.1", 2222, key, "accept-new")
    assert path.read_bytes() == _line("[127.0.0.1]:2222", key)  # not added twice
    verify_host_key(store, "web1", 22, key, "accept-new", alias="web1-alias")
    assert path.read_bytes().endswith(_line("web1-alias", key))


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_changed_key_refused_under_every_policy(tmp_path: Path, policy: str) -> None:
    path = tmp_path / "known_hosts"
    path.write_bytes(_line("[127.0.0.1]:2222", _new_ed25519()))
    before = path.read_bytes()
    key = _new_ed25519()
    with pytest.raises(HostKeyError) as info:
        verify_host_key(HostKeyStore([path]), "127.0.0.1", 2222, key, policy)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "\n" not in msg
    assert "HOST KEY FOR 127.0.0.1:2222 HAS CHANGED" in msg
    assert "refused under every policy" in msg
    assert f"ssh-keygen -R '[127.0.0.1]:2222' -f {path}" in msg
    assert f"{path}:1" in msg
    assert fingerprint_sha256(key) in msg
    assert path.read_bytes() == before


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_revoked_key_refused_under_every_policy(tmp_path: Path, policy: str) -> None:
    key = _new_ed25519()
    path = tmp_path / "known_hosts"
    path.write_bytes(_line("[127.0.0.1]:2222", key) + b"@revoked other.host " + _line("", key)[1:])
    before = path.read_bytes()
    with pytest.raises(HostKeyError, match=r"REVOKED in .*known_hosts:2; refused"):
        verify_host_key(HostKeyStore([path]), "127.0.0.1", 2222, key, policy)  # type: ignore[arg-type]
    assert path.read_bytes() == before


def test_other_key_type_known_is_refused_even_under_accept_new(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_bytes(_line("web1", paramiko.ECDSAKey.generate()))
    before = path.read_bytes()
    store = HostKeyStore([path])
    key = _new_ed25519()
    assert store.check("web1", 22, key) is HostKeyStatus.UNKNOWN
    for policy in ("strict", "accept-new"):
        with pytest.raises(HostKeyError, match="only ecdsa-sha2-nistp256 keys are known"):
            verify_host_key(store, "web1", 22, key, policy)
    assert path.read_bytes() == before


def test_unknown_policy_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        verify_host_key(HostKeyStore([tmp_path / "kh"]), "h", 22, _new_ed25519(), "yes")  # type: ignore[arg-type]


@needs_ssh_keygen
def test_host_certificates(tmp_path: Path) -> None:
    def keygen(*args: str) -> None:
        subprocess.run(["ssh-keygen", "-q", *args], check=True, capture_output=True)

    keygen("-t", "ed25519", "-N", "", "-f", str(tmp_path / "ca"))
    keygen("-t", "ed25519", "-N", "", "-f", str(tmp_path / "host"))
    keygen(
        "-s", str(tmp_path / "ca"), "-I", "t", "-h", "-n", "h.example", str(tmp_path / "host.pub")
    )
    cert_b64 = (tmp_path / "host-cert.pub").read_text().split()[1]
    cert = paramiko.Ed25519Key(data=base64.b64decode(cert_b64))  # as paramiko's transport builds it
    assert getattr(cert, "public_blob", None) is not None  # really a certificate
    plain = _pub_key((tmp_path / "host.pub").read_text())
    ca_line = b"@cert-authority *.example " + (tmp_path / "ca.pub").read_bytes()

    path = tmp_path / "known_hosts"
    path.write_bytes(ca_line)
    store = HostKeyStore([path])
    assert store.check("h.example", 22, cert) is HostKeyStatus.UNSUPPORTED
    with pytest.raises(HostKeyError, match=r"host certificate .* cannot verify; refused"):
        verify_host_key(store, "h.example", 22, cert, "accept-new")
    assert path.read_bytes() == ca_line
    # a CA line never vouches for a plain key
    assert store.check("h.example", 22, plain) is HostKeyStatus.UNKNOWN

    path.write_bytes(ca_line + _line("h.example", plain))
    assert store.check("h.example", 22, cert) is HostKeyStatus.KNOWN  # OpenSSH's plain fallback

    other = tmp_path / "other_known_hosts"
    verify_host_key(HostKeyStore([other]), "h.example", 22, cert, "accept-new")
    assert other.read_bytes() == _line("h.example", plain)


# --------------------------------------------------------------------------- add


def test_add_keeps_existing_bytes_and_adds_newline(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    old = (
        b"# comment with \xff latin-1\r\n"
        b"weird   line\t with  spaces\n"
        b"\n"
        + _line("h1", _new_ed25519()).rstrip(b"\n")
        + b"   trailing comment  \n"
        + _line("last", _new_ed25519()).rstrip(b"\n")
    )
    path.write_bytes(old)
    path.chmod(0o644)
    key = _new_ed25519()
    store = HostKeyStore([path])
    assert store.add("127.0.0.1", 2200, key) is True
    assert path.read_bytes() == old + b"\n" + _line("[127.0.0.1]:2200", key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert store.add("127.0.0.1", 2200, key) is False
    assert path.read_bytes() == old + b"\n" + _line("[127.0.0.1]:2200", key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["known_hosts", "known_hosts.lock"]


def test_add_creates_file_and_directory_private(tmp_path: Path) -> None:
    path = tmp_path / "home" / ".ssh" / "known_hosts"
    assert HostKeyStore([path]).add("web1", 22, _new_ed25519())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_add_through_symlink_writes_the_target(tmp_path: Path) -> None:
    real = tmp_path / "real_known_hosts"
    real.write_bytes(b"# kept\n")
    link = tmp_path / "known_hosts"
    link.symlink_to(real)
    key = _new_ed25519()
    HostKeyStore([link]).add("web1", 22, key)
    assert link.is_symlink()
    assert real.read_bytes() == b"# kept\n" + _line("web1", key)


def test_failed_replace_leaves_original_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "known_hosts"
    path.write_bytes(b"# original\n")

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(HostKeyError, match=r"cannot record its new key .*No space left"):
        verify_host_key(HostKeyStore([path]), "web1", 22, _new_ed25519(), "accept-new")
    assert path.read_bytes() == b"# original\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["known_hosts", "known_hosts.lock"]


def test_threads_add_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_bytes(b"# header\n")
    keys = [_new_ed25519() for _ in range(40)]
    store = HostKeyStore([path])
    added: list[bool] = []
    errors: list[BaseException] = []

    def work(chunk: list[int]) -> None:
        try:
            for i in chunk:  # every key is added by two threads
                added.append(store.add("127.0.0.1", 40000 + i, keys[i]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(list(range(j % 4, 40, 4)),)) for j in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert added.count(True) == 40
    lines = path.read_bytes().splitlines(keepends=True)
    assert lines[0] == b"# header\n"
    assert sorted(lines[1:]) == sorted(
        _line(f"[127.0.0.1]:{40000 + i}", keys[i]) for i in range(40)
    )


_CHILD = textwrap.dedent(
    """
    import base64, os, sys, threading, time
    import paramiko
    from remoteops.hostkeys import HostKeyStore

    path, go, job_file = sys.argv[1:4]
    with open(job_file) as fh:
        jobs = [line.split() for line in fh]
    store = HostKeyStore([path])
    results, errors = [], []

    def work(chunk):
        try:
            for port, key_type, b64 in chunk:
                key = paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))
                results.append((port, store.add("127.0.0.1", int(port), key)))
        except BaseException as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(jobs[i::5],)) for i in range(5)]
    open(go + "." + str(os.getpid()), "w").close()  # ready
    while not os.path.exists(go):  # spin, so that both processes start within microseconds
        pass
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("errors: " + "; ".join(errors))
    print(" ".join(port for port, added in results if added))
    """
)


@needs_ssh_keygen
@pytest.mark.parametrize("foreign", [False, True], ids=["own-file", "file-of-another-user"])
def test_processes_and_threads_add_concurrently(tmp_path: Path, foreign: bool) -> None:
    """Every line kept, in order; a file of another user stays theirs (root writing it)."""
    if foreign:
        _require_root()
    path = tmp_path / "known_hosts"
    old = (
        b"# fleet keys, managed by hand\n"
        + _line("web1.example.com,10.0.0.1", _new_ed25519())
        + b"@revoked * "
        + _line("", _new_ed25519())[1:]
        + _line("[db1]:2222", paramiko.ECDSAKey.generate()).rstrip(b"\n")
    )
    path.write_bytes(old)
    if foreign:
        os.chown(path, _OTHER_UID, _OTHER_GID)
        path.chmod(0o640)
    own = {p: [(30000 + 100 * p + i, _new_ed25519()) for i in range(25)] for p in (0, 1)}
    shared = [(31000 + i, _new_ed25519()) for i in range(5)]  # both processes add these
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    children = []
    for p in (0, 1):
        job_file = tmp_path / f"jobs{p}"
        job_file.write_text(
            "".join(f"{port} {k.get_name()} {k.get_base64()}\n" for port, k in own[p] + shared)
        )
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), str(go), str(job_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        children.append(child)

    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go.*"))) < 2 and time.monotonic() < deadline:
        assert all(c.poll() is None for c in children), "a child process died early"
        time.sleep(0.01)
    go.touch()
    seen_partial: list[bytes] = []
    while any(c.poll() is None for c in children):  # a reader never sees a half-written file
        now = path.read_bytes()
        if now != old and not (now.startswith(old + b"\n") and now.endswith(b"\n")):
            seen_partial.append(now)
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        outputs.append(out.split())
    assert seen_partial == []

    written = sorted(int(port) for out in outputs for port in out)
    expected_ports = sorted(port for port, _ in own[0] + own[1] + shared)
    assert written == expected_ports  # each shared key recorded by exactly one process

    final = path.read_bytes()
    assert final.startswith(old + b"\n")
    new_lines = final[len(old) + 1 :].splitlines(keepends=True)
    expected = [_line(f"[127.0.0.1]:{port}", k) for port, k in own[0] + own[1] + shared]
    assert sorted(new_lines) == sorted(expected)
    names = {p.name for p in tmp_path.iterdir() if not p.name.startswith(("go", "jobs"))}
    assert names == {"known_hosts", "known_hosts.lock"}  # no temp file left behind
    if foreign:
        assert _owner_and_mode(path) == (_OTHER_UID, _OTHER_GID, 0o640)
        assert _owner_and_mode(tmp_path / "known_hosts.lock")[:2] == (_OTHER_UID, _OTHER_GID)

    for port, key in own[0] + own[1] + shared:
        found = [n for n, tag in _ssh_keygen_found(f"[127.0.0.1]:{port}", path) if tag == ""]
        assert len(found) == 1
        assert final.splitlines()[found[0] - 1].decode().split()[2] == key.get_base64()
    store = HostKeyStore([path])
    assert all(store.check("127.0.0.1", p, k) is HostKeyStatus.KNOWN for p, k in shared)


# --------------------------------------------------------------------------- owners

# Numeric ids of no account: root may give files to any uid and gid.
_OTHER_UID, _OTHER_GID, _MEMBER_UID = 4242, 4343, 4244


def _require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root: files of other users must be tested")
        pytest.skip("only root can give a file to another user")


def _owner_and_mode(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_root_adding_keeps_the_owner_group_and_mode(tmp_path: Path) -> None:
    """root's cron recording a key in a user's known_hosts leaves the file (and lock) theirs."""
    _require_root()
    path = tmp_path / "known_hosts"
    old = b"# shared\n" + _line("web1", _new_ed25519()) + _line("web2", _new_ed25519())
    path.write_bytes(old)
    os.chown(path, _OTHER_UID, _OTHER_GID)
    path.chmod(0o640)
    (tmp_path / "known_hosts.lock").touch(0o600)  # left by an earlier root run
    key = _new_ed25519()
    verify_host_key(HostKeyStore([path]), "db1", 22, key, "accept-new")
    assert path.read_bytes() == old + _line("db1", key)
    assert _owner_and_mode(path) == (_OTHER_UID, _OTHER_GID, 0o640)
    assert _owner_and_mode(tmp_path / "known_hosts.lock")[:2] == (_OTHER_UID, _OTHER_GID)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["known_hosts", "known_hosts.lock"]


def test_hard_linked_file_is_appended_in_place(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_bytes(b"# kept\n")
    twin = tmp_path / "known_hosts.shared"
    os.link(path, twin)
    key = _new_ed25519()
    assert HostKeyStore([path]).add("web1", 22, key)
    assert twin.read_bytes() == path.read_bytes() == b"# kept\n" + _line("web1", key)
    assert path.stat().st_ino == twin.stat().st_ino


_AS_GROUP_MEMBER = textwrap.dedent(
    """
    import base64, os, sys
    import paramiko
    from remoteops.hostkeys import HostKeyStore

    path, uid, gid, key_type, b64 = sys.argv[1:6]
    key = paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))
    os.setgroups([int(gid)])  # everything is imported: drop root, keep the group
    os.setgid(int(gid))
    os.setuid(int(uid))
    print(HostKeyStore([path]).add("web9", 22, key))
    """
)


def test_group_member_adding_keeps_the_owner(tmp_path: Path) -> None:
    """A user who may write another's file, but not give a file away, appends in place."""
    _require_root()
    shared = Path(tempfile.mkdtemp(prefix="remoteops-kh-"))
    try:
        shared.chmod(0o711)  # pytest's tmp_path is root's alone
        ssh_dir = shared / "ssh"
        ssh_dir.mkdir()
        os.chown(ssh_dir, _OTHER_UID, _OTHER_GID)
        ssh_dir.chmod(0o770)  # the group may create files: a replace would be allowed
        path = ssh_dir / "known_hosts"
        old = b"# team file\n" + _line("web1", _new_ed25519()).rstrip(b"\n")
        path.write_bytes(old)
        os.chown(path, _OTHER_UID, _OTHER_GID)
        path.chmod(0o660)
        inode = path.stat().st_ino
        key = _new_ed25519()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        args = [str(path), str(_MEMBER_UID), str(_OTHER_GID), key.get_name(), key.get_base64()]
        result = subprocess.run(
            [sys.executable, "-c", _AS_GROUP_MEMBER, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "True"
        assert path.read_bytes() == old + b"\n" + _line("web9", key)
        assert _owner_and_mode(path) == (_OTHER_UID, _OTHER_GID, 0o660)
        assert path.stat().st_ino == inode  # written in place
        assert not [p for p in ssh_dir.iterdir() if p.name.endswith(".tmp")]
    finally:
        shutil.rmtree(shared, ignore_errors=True)

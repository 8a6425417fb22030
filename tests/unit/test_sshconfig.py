"""ssh_config resolution checked against the real ``ssh -G`` (OpenSSH client).

Each directory under ``tests/data/ssh_config/`` is a case: ``config`` (``@CASE@`` stands for
the case's copied directory, ``@LOCALUSER@`` for the local user), optional included files,
``dot_ssh/`` (becomes ``$HOME/.ssh``) and ``queries``: one ``[-l USER] [-p PORT] HOST`` per
line. For every query we run ``ssh -G -F config ...`` and compare its answer with ours.
"""

from __future__ import annotations

import os
import pickle
import pwd
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from remoteops.errors import InventoryError, UsageError
from remoteops.sshconfig import (
    DEFAULT_IDENTITY_FILES,
    JumpHost,
    SSHConfig,
    SSHHostConfig,
    parse_proxy_jump,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "ssh_config"
SSH = shutil.which("ssh") or "/usr/bin/ssh"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "config").is_file())
LOCAL_USER = pwd.getpwuid(os.getuid()).pw_name

needs_ssh = pytest.mark.skipif(
    not os.access(SSH, os.X_OK), reason="OpenSSH client (ssh) not installed; cannot run ssh -G"
)


def _queries(case: str) -> list[list[str]]:
    lines = (DATA / case / "queries").read_text().splitlines()
    return [shlex.split(line) for line in lines if line.strip() and not line.startswith("#")]


def _install(case: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Copy a case to tmp_path (0644 files, as ssh wants), return its config and environment."""
    work = tmp_path / "case"
    shutil.copytree(DATA / case, work)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    if (work / "dot_ssh").is_dir():
        shutil.copytree(work / "dot_ssh", home / ".ssh", dirs_exist_ok=True)
    for path in [*work.rglob("*"), *home.rglob("*")]:
        if path.is_file():
            text = path.read_text()
            text = text.replace("@CASE@", str(work)).replace("@LOCALUSER@", LOCAL_USER)
            path.write_text(text)
            path.chmod(0o644)
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REMOTEOPS_TEST_VAR": "from-env",
    }
    return work / "config", env


def _ssh_g(config: Path, argv: list[str], env: dict[str, str]) -> dict[str, list[str]]:
    proc = subprocess.run(
        [SSH, "-G", "-F", str(config), *argv],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, f"ssh -G {argv} failed: {proc.stderr}"
    out: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key.lower(), []).append(value)
    return out


def _resolve(config: Path, argv: list[str], env: dict[str, str]) -> SSHHostConfig:
    user = port = None
    args = list(argv)
    while args[0] in ("-l", "-p"):
        flag, value = args.pop(0), args.pop(0)
        if flag == "-l":
            user = value
        else:
            port = int(value)
    (host,) = args
    resolver = SSHConfig.from_file(config, system_path=None, env=env)
    return resolver.resolve(host, user=user, port=port)


def _one(ssh: dict[str, list[str]], key: str) -> str | None:
    values = ssh.get(key)
    return values[0] if values else None


def _time(value: str | None) -> int | None:
    return None if value in (None, "none") else int(value)


@needs_ssh
@pytest.mark.parametrize("case", CASES)
def test_matches_ssh_G(case: str, tmp_path: Path) -> None:
    config, env = _install(case, tmp_path)
    queries = _queries(case)
    assert queries, f"case {case} has no queries"
    for argv in queries:
        ssh = _ssh_g(config, argv, env)
        ours = _resolve(config, argv, env)
        label = f"{case}: {' '.join(argv)}"
        strict = {"true": "yes", "false": "no"}
        ours_identity_raw = list(ours.options.get("identityfile", DEFAULT_IDENTITY_FILES))
        proxyjump = _one(ssh, "proxyjump")
        got = {
            "hostname": ours.hostname,
            "port": ours.port,
            "user": ours.user,
            "identityfile": ours_identity_raw,
            "certificatefile": list(ours.options.get("certificatefile", ())),
            "proxyjump": ours.proxy_jump,
            "proxycommand": ours.proxy_command,
            "connecttimeout": ours.connect_timeout,
            "serveraliveinterval": ours.server_alive_interval,
            "serveralivecountmax": ours.server_alive_count_max,
            "stricthostkeychecking": ours.strict_host_key_checking,
            "userknownhostsfile": list(ours.user_known_hosts_files),
            "globalknownhostsfile": list(ours.global_known_hosts_files),
            "hostkeyalias": ours.host_key_alias,
            "compression": ours.compression,
            "addressfamily": ours.address_family,
            "preferredauthentications": ",".join(ours.preferred_authentications) or None,
            "passwordauthentication": ours.password_authentication,
            "batchmode": ours.batch_mode,
            "identitiesonly": ours.identities_only,
            "forwardagent": ours.forward_agent,
        }
        want = {
            "hostname": _one(ssh, "hostname"),
            "port": int(ssh["port"][0]),
            "user": _one(ssh, "user"),
            "identityfile": ssh.get("identityfile", []),
            "certificatefile": ssh.get("certificatefile", []),
            "proxyjump": parse_proxy_jump(proxyjump) if proxyjump else (),
            "proxycommand": _one(ssh, "proxycommand"),
            "connecttimeout": _time(_one(ssh, "connecttimeout")),
            "serveraliveinterval": int(ssh["serveraliveinterval"][0]),
            "serveralivecountmax": int(ssh["serveralivecountmax"][0]),
            "stricthostkeychecking": strict.get(ssh["stricthostkeychecking"][0],
                                                ssh["stricthostkeychecking"][0]),
            "userknownhostsfile": ssh["userknownhostsfile"][0].split(" "),
            "globalknownhostsfile": ssh["globalknownhostsfile"][0].split(" "),
            "hostkeyalias": _one(ssh, "hostkeyalias"),
            "compression": ssh["compression"][0] == "yes",
            "addressfamily": ssh["addressfamily"][0],
            "preferredauthentications": _one(ssh, "preferredauthentications"),
            "passwordauthentication": ssh["passwordauthentication"][0] == "yes",
            "batchmode": ssh["batchmode"][0] == "yes",
            "identitiesonly": ssh["identitiesonly"][0] == "yes",
            "forwardagent": ssh["forwardagent"][0],
        }  # fmt: skip
        for key, value in want.items():
            assert got[key] == value, f"{label}: {key}: ours {got[key]!r}, ssh -G {value!r}"


# ------------------------------------------------------------------ targeted behaviour


def _config(tmp_path: Path, text: str, **kwargs: object) -> SSHConfig:
    path = tmp_path / "config"
    path.write_text(text)
    return SSHConfig.from_file(path, system_path=None, **kwargs)  # type: ignore[arg-type]


@needs_ssh
def test_identity_files_expand_like_known_hosts(tmp_path: Path) -> None:
    """ssh expands IdentityFile with the same tokens as UserKnownHostsFile (which -G shows)."""
    config, env = _install("tokens_files", tmp_path)
    for argv in (["tok1"], ["-l", "other", "-p", "2200", "tok2"]):
        ssh = _ssh_g(config, argv, env)
        ours = _resolve(config, argv, env)
        assert list(ours.identity_files) == ssh["userknownhostsfile"][0].split(" ")
        assert ours.identity_files[0].startswith(pwd.getpwuid(os.getuid()).pw_dir)


def test_multi_hop_proxy_jump_is_parsed(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "Host m\n  ProxyJump user1@jump1:2222,jump2,ssh://u3@[::1]:2200\n")
    assert cfg.resolve("m").proxy_jump == (
        JumpHost("jump1", "user1", 2222),
        JumpHost("jump2"),
        JumpHost("::1", "u3", 2200),
    )
    assert cfg.resolve("m").proxy_command is None
    assert [str(h) for h in cfg.resolve("m").proxy_jump] == [
        "user1@jump1:2222",
        "jump2",
        "u3@[::1]:2200",
    ]


def test_sources_name_file_and_line(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "# c\nHost *\n  Port 2022\n  IdentityFile /a\n  IdentityFile /b\n")
    result = cfg.resolve("h", user="cli")
    path = tmp_path / "config"
    assert result.sources["port"] == f"{path}:3"
    assert result.sources["identityfile"] == f"{path}:4, {path}:5"
    assert result.sources["user"] == "command line"
    assert result.sources["connecttimeout"] == "default"


def test_empty_config_gives_ssh_defaults() -> None:
    result = SSHConfig.empty(home="/home/x", local_user="x").resolve("Host1")
    assert (result.hostname, result.port, result.user) == ("host1", 22, "x")
    assert result.identity_files[0] == "/home/x/.ssh/id_rsa"
    assert result.user_known_hosts_files == (
        "/home/x/.ssh/known_hosts",
        "/home/x/.ssh/known_hosts2",
    )
    assert result.strict_host_key_checking == "ask"
    assert result.proxy_jump == ()
    assert result.connect_timeout is None


def test_resolve_is_cached_and_fast(tmp_path: Path) -> None:
    lines = [f"Host web{i}\n  HostName 10.0.{i // 250}.{i % 250}\n  Port {2000 + i}\n"
             for i in range(200)]  # fmt: skip
    lines.append("Match host 10.0.* user deploy\n  IdentityFile ~/.ssh/fleet\nHost *\n  User ops\n")
    cfg = _config(tmp_path, "".join(lines))
    assert cfg.resolve("web7") is cfg.resolve("web7")
    start = time.perf_counter()
    results = [cfg.resolve(f"web{i % 200}", user="deploy", port=None) for i in range(200)]
    results += [cfg.resolve(f"host{i}") for i in range(10_000)]
    elapsed = time.perf_counter() - start
    assert results[7].port == 2007
    assert results[7].options["identityfile"] == ("~/.ssh/fleet",)
    assert results[300].user == "ops"
    assert elapsed < 20, f"10,200 resolutions took {elapsed:.1f}s"


def test_result_pickles(tmp_path: Path) -> None:
    result = _config(tmp_path, "Host *\n  ProxyJump a,u@b:2\n  Port 2200\n").resolve("h")
    clone = pickle.loads(pickle.dumps(result))
    assert clone == result
    assert clone.proxy_jump == (JumpHost("a"), JumpHost("b", "u", 2))


def test_missing_system_config_and_default_are_fine(tmp_path: Path) -> None:
    cfg = SSHConfig.from_file(
        tmp_path / "absent", system_path=tmp_path / "absent-too", missing_ok=True
    )
    assert cfg.resolve("x").port == 22


def test_match_exec_allowed_runs_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f'Match exec "test %h = yes && touch {marker}"\n  Port 2345\n'
    cfg = _config(tmp_path, text, allow_exec=True)
    assert cfg.resolve("no").port == 22
    assert not marker.exists()
    assert cfg.resolve("yes").port == 2345
    assert marker.exists()


def test_system_config_include_is_relative_to_etc_ssh(tmp_path: Path) -> None:
    system = tmp_path / "system_config"
    system.write_text("Include ~/x.conf\n")
    with pytest.raises(InventoryError, match=r"system_config:1: bad include path"):
        SSHConfig.from_file(None, system_path=system)


# ------------------------------------------------------------------ errors (ssh agrees)

ERRORS = {
    "unknown_keyword": ("Host x\n  Fooble yes\n", 2, "Bad configuration option: fooble"),
    "bad_port": ("Host nomatch\n  Port 0x10\n", 2, "Bad port '0x10'"),
    "missing_criteria": ("Match host\n  Port 1\n", 1, "Missing Match criteria for host"),
    "unsupported_match": ("Match tagged x\n  Port 1\n", 1, "Unsupported Match attribute tagged"),
    "all_combined": ("Match all host x\n", 1, "'all' cannot be combined"),
    "no_argument": ("Host\n", 1, 'no argument after keyword "host"'),
    "bad_quotes": ('Host x\n  User "open\n', 2, "invalid quotes"),
    "bad_jump": ("Host nomatch\n  ProxyJump u@\n", 2, "Invalid ProxyJump"),
    "bad_flag": ("Host nomatch\n  Compression maybe\n", 2, 'unsupported option "maybe"'),
    "bad_time": ("ConnectTimeout soon\n", 1, "invalid time value"),
    "known_hosts_none": ("UserKnownHostsFile none /x\n", 1, '"none" argument must appear alone'),
    "extra_args": ("Port 22 23\n", 1, "extra arguments at end of line"),
    "unknown_ignored_too_late": ("Fooble x\nIgnoreUnknown Fooble\n", 1, "Bad configuration option"),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_config_errors_name_file_and_line(name: str, tmp_path: Path) -> None:
    text, line, message = ERRORS[name]
    path = tmp_path / "config"
    path.write_text(text)
    if os.access(SSH, os.X_OK):
        proc = subprocess.run([SSH, "-G", "-F", str(path), "x"], capture_output=True, check=False)
        assert proc.returncode != 0, f"ssh accepts {text!r}"
    with pytest.raises(InventoryError) as info:
        SSHConfig.from_file(path, system_path=None).resolve("x")
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_keyword_after_ignore_unknown_in_other_block(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "Host a\n  IgnoreUnknown Foo\nHost *\n  Foo 1\n")
    assert cfg.resolve("a").port == 22
    with pytest.raises(InventoryError, match=r"config:4: Bad configuration option: foo"):
        cfg.resolve("b")


def test_match_exec_rejected_by_default(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"config:2: Match exec 'true' is not supported"):
        _config(tmp_path, "Host *\nMatch exec true\n  Port 1\n")


def test_unknown_token_is_reported(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "Host *\n  UserKnownHostsFile /kh/%j\n")
    with pytest.raises(InventoryError, match=r"config:2: unknown token %j"):
        cfg.resolve("x")


def test_include_loop_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text(f"Include {tmp_path}/b.conf\n")
    (tmp_path / "b.conf").write_text(f"Include {tmp_path}/a.conf\n")
    with pytest.raises(InventoryError, match=r"b.conf:1: Too many recursive"):
        SSHConfig.from_file(tmp_path / "a.conf", system_path=None)


def test_missing_user_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"absent: Can't open ssh config file"):
        SSHConfig.from_file(tmp_path / "absent", system_path=None)


def test_bad_override_port_is_usage_error() -> None:
    with pytest.raises(UsageError, match="bad port 70000"):
        SSHConfig.empty().resolve("x", port=70000)


def test_parse_proxy_jump_rejects_empty_host() -> None:
    with pytest.raises(InventoryError, match="Invalid ProxyJump"):
        parse_proxy_jump("a,:22")
    assert parse_proxy_jump("None") == ()


@needs_ssh
def test_default_files_match_plain_ssh() -> None:
    """Without -F, ssh reads ~/.ssh/config and /etc/ssh/ssh_config; so does from_default()."""
    proc = subprocess.run(
        [SSH, "-G", "-l", "someone", "web.example"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"ssh -G refuses this machine's own config: {proc.stderr.strip()}")
    ssh: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        ssh.setdefault(key, []).append(value)
    ours = SSHConfig.from_default().resolve("web.example", user="someone")
    assert ours.hostname == ssh["hostname"][0]
    assert str(ours.port) == ssh["port"][0]
    assert ours.user == ssh["user"][0]
    assert list(ours.options.get("identityfile", DEFAULT_IDENTITY_FILES)) == ssh["identityfile"]
    assert " ".join(ours.user_known_hosts_files) == ssh["userknownhostsfile"][0]


def test_a_file_named_again_is_listed_once(tmp_path: Path) -> None:
    """Two matching blocks naming one IdentityFile (ssh -G lists it once; see the
    repeat_across_blocks case); two spellings of one path are tried once too."""
    cfg = _config(
        tmp_path,
        "Host web*\n  IdentityFile ~/.ssh/k\n  CertificateFile /c\n"
        "Host *\n  IdentityFile ~/.ssh/k\n  IdentityFile %d/.ssh/k\n  CertificateFile /c\n",
        home="/home/x",
        local_user="x",
    )
    result = cfg.resolve("web1")
    assert result.options["identityfile"] == ("~/.ssh/k", "%d/.ssh/k")
    assert result.identity_files == ("/home/x/.ssh/k",)
    assert result.certificate_files == ("/c",)

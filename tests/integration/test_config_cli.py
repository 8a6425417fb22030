"""Config files and profiles on the real command line (docs/config.md).

Every test runs ``remoteops`` in a new process with its own config files named by
REMOTEOPS_SYSTEM_CONFIG and REMOTEOPS_CONFIG (the session's are /dev/null), and
checks what the commands do with them: ``config show``, ``inventory list`` and,
over SSH to the lab, ``ping`` and ``run``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import typer.main

from remoteops.cli import app
from remoteops.lab import Lab
from tests.helpers import run_cli

pytestmark = pytest.mark.integration

_CLEARED = ("REMOTEOPS_PROFILE", "REMOTEOPS_INVENTORY", "REMOTEOPS_LOCK", "REMOTEOPS_DEBUG")


def _env(system: Path | str, user: Path | str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(REMOTEOPS_SYSTEM_CONFIG=str(system), REMOTEOPS_CONFIG=str(user), **more)
    return env


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)  # whatever the umask
    return path


def _inventory(tmp_path: Path, name: str) -> Path:
    """A one-host inventory whose host is named ``name``."""
    return _write(tmp_path / f"{name}.yml", f"all:\n  hosts:\n    {name}:\n", 0o644)


def _show(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = run_cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _setting(shown: dict[str, Any], key: str) -> dict[str, Any]:
    (found,) = [s for s in shown["settings"] if s["key"] == key]
    return found  # type: ignore[no-any-return]


LEVELS = ["default", "system file", "user file", "profile", "environment", "command line"]


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_beats_the_ones_below_it(tmp_path: Path, level: str) -> None:
    """`inventory` set at every level up to ``level``: config show names that level, and
    `inventory list` lists the host of that level's inventory."""
    up_to = LEVELS[: LEVELS.index(level) + 1]
    inv = {name: _inventory(tmp_path, name.replace(" ", "")) for name in LEVELS}
    system = _write(tmp_path / "system.toml", "")
    user = _write(tmp_path / "user.toml", "")
    more: dict[str, str] = {}
    before: list[str] = []
    if "system file" in up_to:
        _write(system, f'inventory = ["{inv["system file"]}"]\n')
    if "user file" in up_to:
        _write(user, f'# mine\ninventory = ["{inv["user file"]}"]\n')
    if "profile" in up_to:
        text = (
            user.read_text()
            + f'\n[profiles.p.inventory]\nlist = {{ inventory = ["{inv["profile"]}"] }}\n'
        )
        _write(user, text)
        before = ["--profile", "p"]
    if "environment" in up_to:
        more["REMOTEOPS_INVENTORY"] = str(inv["environment"])
    after = ["-i", str(inv["command line"])] if "command line" in up_to else []
    env = _env(system, user, **more)

    shown = _show(env, *before, "config", "show", "--json", "inventory", "list", *after)
    setting = _setting(shown, "inventory.list.inventory")
    expected: dict[str, dict[str, Any]] = {
        "default": {"source": "default"},
        "system file": {"source": "file", "file": str(system), "line": 1},
        "user file": {"source": "file", "file": str(user), "line": 2},
        "profile": {"source": "profile", "file": str(user), "line": 5, "profile": "p"},
        "environment": {"source": "environment", "env": "REMOTEOPS_INVENTORY"},
        "command line": {"source": "command line"},
    }
    assert {k: setting[k] for k in expected[level]} == expected[level]

    listed = run_cli(*before, "inventory", "list", *after, env=env, cwd=tmp_path)
    if level == "default":  # ./inventories/hosts.yml, absent here
        assert listed.returncode == 2, listed.stdout
        return
    assert listed.returncode == 0, listed.stderr
    assert "hosts (1):" in listed.stdout
    assert f" {level.replace(' ', '')}\n" in listed.stdout


def test_a_profile_drives_real_commands_over_ssh_and_the_command_line_beats_it(
    tmp_path: Path, lab: Lab
) -> None:
    first, second = lab.hosts[0].name, lab.hosts[1].name
    user = _write(
        tmp_path / "user.toml",
        "forks = 2\n"
        "\n"
        "[profiles.lab]\n"
        f'inventory = ["{lab.inventory}"]\n'
        f'limit = "{first}"\n'
        "json = true\n"
        "run = { timeout = 1 }\n",
    )
    env = _env(os.devnull, user, REMOTEOPS_PROFILE="lab")
    pinged = run_cli("ping", env=env)
    assert pinged.returncode == 0, pinged.stderr
    lines = [json.loads(line) for line in pinged.stdout.splitlines()]
    assert [(x["host"], x["status"]) for x in lines if x["type"] == "host"] == [(first, "ok")]

    # The profile's [run] timeout stops a command that would take 30 s.
    timed_out = run_cli("run", "all", "--", "sleep 30", env=env, timeout=60)
    assert timed_out.returncode == 3, timed_out.stderr
    hosts = [json.loads(line) for line in timed_out.stdout.splitlines()]
    assert [(x["host"], x["status"]) for x in hosts if x["type"] == "host"] == [(first, "timeout")]

    # The command line beats the profile; without the profile, none of it applies.
    other = run_cli("run", "all", "-l", second, "-t", "20", "--", "hostname", env=env)
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout.splitlines()[0])["stdout"] == f"{second}\n"
    plain = run_cli("ping", "-i", str(lab.inventory), env=_env(os.devnull, user))
    assert plain.returncode == 0, plain.stderr
    assert not plain.stdout.startswith("{")  # no json = true outside the profile
    assert all(host.name in plain.stdout for host in lab.hosts)  # no limit either


def test_the_profile_comes_from_the_variable_and_the_option_beats_it(tmp_path: Path) -> None:
    user = _write(tmp_path / "user.toml", "[profiles.a]\nforks = 3\n\n[profiles.b]\nforks = 4\n")
    env = _env(os.devnull, user, REMOTEOPS_PROFILE="a")
    shown = _show(env, "config", "show", "--json", "run")
    assert (shown["profile"], shown["profile_source"]) == ("a", "REMOTEOPS_PROFILE")
    assert _setting(shown, "run.forks")["value"] == 3
    shown = _show(env, "--profile", "b", "config", "show", "--json", "run")
    assert (shown["profile"], shown["profile_source"]) == ("b", "--profile")
    assert _setting(shown, "run.forks")["value"] == 4
    text = run_cli("--profile", "b", "config", "show", env=env)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("# profile: b (from --profile)\n")
    forks = [line.split(None, 2) for line in text.stdout.splitlines() if line.startswith("forks")]
    assert forks == [["forks", "4", f"profile b in {user}:5"]]


def _one_error_line(done: Any) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return str(lines[0])


def test_an_unknown_profile_is_named_with_what_chose_it(tmp_path: Path) -> None:
    user = _write(tmp_path / "user.toml", "[profiles.nightly]\nforks = 3\n")
    line = _one_error_line(run_cli("--profile", "nightyl", "ping", env=_env(os.devnull, user)))
    assert line.startswith("remoteops: error: --profile nightyl: no such profile in ")
    assert line.endswith("did you mean 'nightly'?")
    line = _one_error_line(run_cli("ping", env=_env(os.devnull, user, REMOTEOPS_PROFILE="x")))
    assert line.startswith("remoteops: error: REMOTEOPS_PROFILE=x: no such profile in ")


def _leaf_commands() -> list[list[str]]:
    """One command line per command of the real command line (each group's first leaf)."""
    root = typer.main.get_command(app)
    found = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        sub = getattr(command, "commands", None)
        found.append([name, next(iter(sub))] if sub else [name])
    return found


BAD = [
    ('forks = 5\n\n[run]\nforks = "many"\n', 4, 'forks = "many": expected a whole number'),
    (
        '[run]\ntimeout = 3\nhost-key-checking = "strict"\n',
        3,
        "unknown key 'host-key-checking' in [run]; did you mean 'host-key-policy'?",
    ),
    ("forks = [1\n", 1, "not valid TOML"),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD, ids=["value", "key", "toml"])
def test_a_bad_file_stops_every_command_with_one_line_naming_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    user = _write(tmp_path / "user.toml", text)
    env = _env(os.devnull, user)
    commands = [["run", "all", "--", "true"]]
    if text == BAD[0][0]:
        commands = _leaf_commands()
        assert len(commands) >= 10
    for words in commands:
        error = _one_error_line(run_cli(*words, env=env, cwd=tmp_path))
        assert error.startswith(f"remoteops: error: {user}:{line}: "), (words, error)
        assert message in error, (words, error)
    # In the system file (and as the profile's file) it is the same line.
    error = _one_error_line(run_cli("--profile", "p", "ping", env=_env(user, os.devnull)))
    assert error.startswith(f"remoteops: error: {user}:{line}: ")


def test_a_config_file_others_can_change_is_refused(tmp_path: Path) -> None:
    user = _write(tmp_path / "user.toml", "forks = 5\n", mode=0o664)
    error = _one_error_line(run_cli("inventory", "list", env=_env(os.devnull, user)))
    assert f"{user}: writable by others than its owner (mode 0664)" in error
    assert f"chmod go-w {user}" in error
    system = _write(tmp_path / "system.toml", "forks = 5\n", mode=0o646)
    error = _one_error_line(run_cli("config", "show", env=_env(system, os.devnull)))
    assert f"{system}: writable by others than its owner (mode 0646)" in error


def test_config_show_lists_the_files_and_what_they_set(tmp_path: Path) -> None:
    system = _write(tmp_path / "system.toml", 'forks = 10\n[history]\nmax-age = "30d"\n')
    user = _write(tmp_path / "user.toml", "[run]\ntimeout = 300\n")
    done = run_cli("config", "show", env=_env(system, user, REMOTEOPS_LOCK=str(tmp_path / "l")))
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in done.stdout.splitlines()[2:]}
    assert done.stdout.splitlines()[:2] == ["# profile: none", f"# files: {system}, {user}"]
    assert rows["forks"] == ["10", f"{system}:1"]  # the same for every command with --forks
    assert rows["run.timeout"] == ["300.0", f"{user}:2"]
    assert rows["history.max-age"] == ['"30d"', f"{system}:3"]
    assert rows["history.enabled"] == ["true", "default"]
    assert rows["lock"] == [f'"{tmp_path / "l"}"', "environment REMOTEOPS_LOCK"]
    assert rows["no-log-file"] == ["true", "command line"]  # run_cli gives --no-log-file
    wrong = _one_error_line(run_cli("config", "show", "rnu", env=_env(system, user)))
    assert "has no command 'rnu'; did you mean 'run'?" in wrong

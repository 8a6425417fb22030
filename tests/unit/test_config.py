"""Config files with profiles (remoteops/config.py, docs/config.md).

Precedence is tested through real typer commands: a small app wired as the
command line wires the module (an eager ``--profile`` whose callback gives the
root context the config's default map, and ``config show``), run with typer's
CliRunner; and the real command line's commands, whose option names and types
the files are checked against.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from remoteops import config
from remoteops.cli import app as real_app
from remoteops.cli.app import ProfileOpt
from remoteops.errors import UsageError

# --------------------------------------------------------------------------- a small app


def make_app() -> typer.Typer:
    """An app wired the way the command line wires remoteops.config."""
    app = typer.Typer(add_completion=False, no_args_is_help=True)

    @app.callback()
    def root(
        profile: ProfileOpt = None,  # the command line's own declaration
        lock: Annotated[Path | None, typer.Option("--lock", envvar="REMOTEOPS_LOCK")] = None,
        verbose: Annotated[int, typer.Option("-v", "--verbose", count=True)] = 0,
    ) -> None:
        pass

    @app.command("run")
    def run(
        ctx: typer.Context,
        pattern: Annotated[str, typer.Argument()],
        forks: Annotated[
            int | None, typer.Option("-f", "--forks", envvar="REMOTEOPS_FORKS", min=1)
        ] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        inventory: Annotated[list[str] | None, typer.Option("-i", "--inventory")] = None,
        key: Annotated[list[Path] | None, typer.Option("--key")] = None,
        policy: Annotated[
            Literal["strict", "accept-new"] | None, typer.Option("--host-key-policy")
        ] = None,
        timeout: Annotated[float | None, typer.Option("-t", "--timeout")] = None,
    ) -> None:
        shown = {
            name: [config._plain(ctx.params[name]), str(config.source_of(ctx, name))]
            for name in ("forks", "as_json", "inventory", "key", "policy", "timeout")
        }
        typer.echo(json.dumps(shown))

    lab = typer.Typer(no_args_is_help=True)
    app.add_typer(lab, name="lab")

    @lab.command("up")
    def up(
        port: Annotated[int, typer.Option("--port", envvar="REMOTEOPS_LAB_PORT")] = 2222,
        lab_dir: Annotated[Path | None, typer.Option("--dir")] = None,
    ) -> None:
        pass

    @lab.command("down")
    def down(lab_dir: Annotated[Path | None, typer.Option("--dir")] = None) -> None:
        pass

    history = typer.Typer(no_args_is_help=True)
    app.add_typer(history, name="history")

    @history.command("list")
    def history_list(
        ctx: typer.Context,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        limit: Annotated[int, typer.Option("-n", "--limit")] = 20,
    ) -> None:
        found = config.config_from_context(ctx)
        typer.echo(json.dumps([as_json, limit, found.section_value("history", "enabled")]))

    config_app = typer.Typer(no_args_is_help=True)
    app.add_typer(config_app, name="config")

    @config_app.command(
        "show",
        context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    )
    def show(
        ctx: typer.Context,
        words: Annotated[list[str] | None, typer.Argument(metavar="[COMMAND [ARGS]...]")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        settings = config.effective_settings(ctx, words or [])
        found = config.config_from_context(ctx)
        if as_json:
            typer.echo(json.dumps(config.settings_json(found, settings)))
        else:
            typer.echo(config.render_settings(found, settings), nl=False)

    return app


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(system file, user file), empty, named by the variables; no profile or layer set."""
    system, user = tmp_path / "system.toml", tmp_path / "user.toml"
    write(system, "")
    write(user, "")
    monkeypatch.setenv(config.SYSTEM_CONFIG_ENV, str(system))
    monkeypatch.setenv(config.CONFIG_ENV, str(user))
    for name in (config.PROFILE_ENV, "REMOTEOPS_FORKS", "REMOTEOPS_LOCK", "REMOTEOPS_LAB_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("REMOTEOPS_INVENTORY", "REMOTEOPS_LAB_DIR", "REMOTEOPS_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    return system, user


def layers(files: tuple[Path, Path], system: str, user: str) -> tuple[Path, Path]:
    """Write the system and the user file; returns their paths."""
    write(files[0], system)
    write(files[1], user)
    return files


def write(path: Path, text: str | bytes, mode: int = 0o644) -> Path:
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    path.chmod(mode)  # whatever the umask: a group-writable file is refused
    return path


def invoke(args: list[str], env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(make_app(), args, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def run_forks(args: list[str], env: dict[str, str] | None = None) -> list[Any]:
    """``run all``'s forks: [value, source]."""
    shown = json.loads(invoke([*args, "run", "all"], env).output)
    return list(shown["forks"])


def show_lines(args: list[str], env: dict[str, str] | None = None) -> dict[str, list[str]]:
    """``config show``'s settings: key -> [value, source]."""
    out = invoke([*args, "config", "show"], env).output
    return {
        line.split()[0]: re.split(r"  +", line)[1:]
        for line in out.splitlines()
        if not line.startswith("#")
    }


# --------------------------------------------------------------------------- precedence

SYSTEM = "forks = 1\n\n[profiles.p]\nforks = 30\n"
USER = "# mine\nforks = 2\n\n[profiles.p]\nforks = 3\n"


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("default", [None, "default"]),
        ("system config", [1, "{system}:1"]),
        ("user config", [2, "{user}:2"]),
        ("profile", [3, "profile p in {user}:5"]),
        ("environment", [4, "environment REMOTEOPS_FORKS"]),
        ("command line", [5, "command line"]),
    ],
)
def test_each_level_beats_the_ones_below(
    files: tuple[Path, Path], level: str, expected: list[Any]
) -> None:
    """command line > REMOTEOPS_* environment > profile > user file > system file > default;
    each case adds its level to those below it."""
    levels = ["default", "system config", "user config", "profile", "environment", "command line"]
    upto = levels.index(level)
    system, user = layers(files, SYSTEM if upto >= 1 else "", USER if upto >= 2 else "")
    args = ["--profile", "p"] if upto >= 3 else []
    env = {"REMOTEOPS_FORKS": "4"} if upto >= 4 else {}
    command = ["run", "all", *(["-f", "5"] if upto >= 5 else [])]
    shown = json.loads(invoke([*args, *command], env).output)
    value, source = expected
    assert shown["forks"] == [value, source.format(system=system, user=user)]


def test_a_profile_in_the_system_file_beats_the_user_files_plain_keys(
    files: tuple[Path, Path],
) -> None:
    system, _ = layers(files, "forks = 1\n[profiles.p]\nforks = 30\n", "forks = 2\n")
    assert run_forks(["--profile", "p"]) == [30, f"profile p in {system}:3"]
    # and REMOTEOPS_PROFILE chooses it as well as --profile does
    assert run_forks([], {config.PROFILE_ENV: "p"}) == [30, f"profile p in {system}:3"]


def test_a_command_table_beats_the_top_level_within_a_file_not_across_files(
    files: tuple[Path, Path],
) -> None:
    user_text = "forks = 8\n[lab.up]\nport = 2400\n[lab]\nport = 2300\n"
    system, user = layers(files, "[run]\nforks = 7\n", user_text)
    assert run_forks([]) == [8, f"{user}:1"]
    assert show_lines([])["lab.up.port"] == ["2400", f"{user}:3"]  # whatever the order
    write(user, "[run]\nforks = 9\n")
    write(system, "forks = 6\n")
    assert run_forks([]) == [9, f"{user}:2"]


def test_global_options_take_the_top_level_keys_environment_still_wins(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    _, user = files
    write(user, 'lock = "~/run.lock"\nverbose = 2\n')
    home = os.path.expanduser("~")
    shown = show_lines([])
    assert shown["lock"] == [f'"{home}/run.lock"', f"{user}:1"]
    assert shown["verbose"] == ["2", f"{user}:2"]
    shown = show_lines(["-v"], {"REMOTEOPS_LOCK": str(tmp_path / "x")})
    assert shown["lock"] == [f'"{tmp_path / "x"}"', "environment REMOTEOPS_LOCK"]
    assert shown["verbose"] == ["1", "command line"]


def test_every_kind_of_value_reaches_the_command(files: tuple[Path, Path]) -> None:
    _, user = files
    write(
        user,
        "[run]\njson = true\ninventory = 'one.yml'\nkey = ['~/k1', 'k2']\n"
        'host-key-policy = "accept-new"\ntimeout = 3\n',
    )
    shown = json.loads(invoke(["run", "all"]).output)
    where = f"{user}"
    home = os.path.expanduser("~")
    assert shown == {
        "forks": [None, "default"],
        "as_json": [True, f"{where}:2"],
        "inventory": [["one.yml"], f"{where}:3"],  # one value for a repeatable option
        "key": [[f"{home}/k1", "k2"], f"{where}:4"],
        "policy": ["accept-new", f"{where}:5"],
        "timeout": [3.0, f"{where}:6"],
    }


# --------------------------------------------------------------------------- config show


def test_config_show_lists_what_is_set_and_where(files: tuple[Path, Path]) -> None:
    user_text = "forks = 4\n[profiles.night]\n[profiles.night.run]\njson = true\n"
    system, user = layers(files, "[lab]\ndir = '/srv/lab'\n", user_text)
    out = invoke(["--profile", "night", "config", "show"], {"REMOTEOPS_LAB_PORT": "2500"}).output
    assert out == (
        "# profile: night (from --profile)\n"
        f"# files: {system}, {user}\n"
        f"lock              (none)      default\n"
        f"verbose           0           default\n"
        f"run.forks         4           {user}:1\n"
        f"run.json          true        profile night in {user}:4\n"
        f"lab.up.port       2500        environment REMOTEOPS_LAB_PORT\n"
        f'lab.dir           "/srv/lab"  {system}:2\n'
        f"history.enabled   true        default\n"
        f'history.max-age   "90d"       default\n'
        f'history.max-size  "256M"      default\n'
    )


def test_config_show_of_one_command_lists_all_its_options_with_the_arguments_given(
    files: tuple[Path, Path],
) -> None:
    _, user = files
    write(user, "forks = 4\n")
    out = invoke(["config", "show", "run", "all", "-t", "9"], {config.PROFILE_ENV: ""}).output
    assert out.splitlines()[2:] == [
        "lock                 (none)  default",
        "verbose              0       default",
        f"run.forks            4       {user}:1",
        "run.json             false   default",
        "run.inventory        []      default",
        "run.key              []      default",
        "run.host-key-policy  (none)  default",
        "run.timeout          9.0     command line",
    ]
    data = json.loads(invoke(["config", "show", "--json", "run", "all"]).output)
    assert data["profile"] is None
    assert data["files"][1] == {"path": str(user), "scope": "user", "found": True}
    assert data["settings"][2] == {
        "key": "run.forks",
        "value": 4,
        "source": "file",
        "env": None,
        "file": str(user),
        "line": 1,
        "profile": None,
    }


def test_config_show_of_a_group_lists_each_of_its_commands(files: tuple[Path, Path]) -> None:
    _, user = files
    write(user, "[profiles.lab]\n[profiles.lab.lab]\ndir = '/srv/lab'\n")
    out = invoke(["config", "show", "lab"], {config.PROFILE_ENV: "lab"}).output
    assert out.splitlines()[0] == "# profile: lab (from REMOTEOPS_PROFILE)"
    assert out.splitlines()[4:] == [
        "lab.up.port   2222        default",
        f'lab.up.dir    "/srv/lab"  profile lab in {user}:3',
        f'lab.down.dir  "/srv/lab"  profile lab in {user}:3',
    ]


def test_config_show_names_a_command_that_does_not_exist(files: tuple[Path, Path]) -> None:
    result = CliRunner().invoke(make_app(), ["config", "show", "rnu"])
    assert isinstance(result.exception, UsageError)
    assert (
        str(result.exception) == "config show: remoteops has no command 'rnu'; did you mean 'run'?"
    )


def test_the_library_reads_some_variables_itself_and_they_still_beat_the_files(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """REMOTEOPS_INVENTORY is read by the library when -i is not given, not by click:
    the files' inventory is left out of the default map while it is set."""
    _, user = files
    write(user, "inventory = ['from-file.yml']\n")
    root = typer.main.get_command(real_app)
    found = config.load_config(root)
    assert found.default_map["run"]["inventory"] == ["from-file.yml"]
    monkeypatch.setenv("REMOTEOPS_INVENTORY", "env.yml")
    found = config.load_config(root)
    assert found.default_map == {}
    context = root.make_context("remoteops", ["run"], default_map=found.default_map)
    context.meta["remoteops.config"] = found
    settings = {s.key: s for s in config.effective_settings(context, ["run", "all"])}
    assert settings["run.inventory"].value == "env.yml"
    assert str(settings["run.inventory"].source) == "environment REMOTEOPS_INVENTORY"


# --------------------------------------------------------------------------- the real commands


def test_the_real_commands_take_the_values_of_their_keys(files: tuple[Path, Path]) -> None:
    """Keys and types come from the real command line: each kind of option gets its value."""
    _, user = files
    write(
        user,
        "verbose = 2\nlock-wait = 1.5\nforks = 20\nprocs = 4\nssh-config = '/etc/fleet_ssh'\n"
        "key = ['/k/a', '/k/b']\n[run]\njson = true\ngather = true\nmax-output = 4096\n"
        "env = ['A=1']\n[lab.up]\nport = 2300\n",
    )
    root = typer.main.get_command(real_app)
    found = config.load_config(root)
    context = root.make_context("remoteops", ["run"], default_map=found.default_map)
    assert (context.params["verbose"], context.params["lock_wait"]) == (2, 1.5)
    run = root.commands["run"].make_context("run", ["all", "--", "uptime"], parent=context)
    assert run.params["forks"] == 20
    assert run.params["procs"] == "4"  # a number or "auto"
    assert run.params["ssh_config"] == Path("/etc/fleet_ssh")
    assert run.params["key"] == [Path("/k/a"), Path("/k/b")]
    assert (run.params["as_json"], run.params["gather_output"]) == (True, True)
    assert (run.params["max_output"], run.params["env"]) == (4096, ["A=1"])
    assert run.get_parameter_source("forks").name == "DEFAULT_MAP"
    lab = root.commands["lab"].make_context("lab", ["up"], parent=context)
    up = root.commands["lab"].commands["up"].make_context("up", [], parent=lab)
    assert up.params["port"] == 2300
    ping = root.commands["ping"].make_context("ping", ["all"], parent=context)
    assert (ping.params["forks"], ping.params["as_json"]) == (20, False)


# --------------------------------------------------------------------------- errors


def real_errors(text: str | bytes, tmp_path: Path) -> str:
    path = write(tmp_path / "c.toml", text)
    with pytest.raises(UsageError) as caught:
        config.load_config(
            typer.main.get_command(real_app), user_path=path, system_path=Path(os.devnull)
        )
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "\n" not in message
    return message.replace(str(path), "FILE")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("frks = 5\n", "FILE:1: unknown key 'frks'; did you mean 'forks'?"),
        (
            '[run]\nhost-key-checking = "accept-new"\n',
            "FILE:2: unknown key 'host-key-checking' in [run]; did you mean 'host-key-policy'?",
        ),
        (
            'ssh_config = "x"\n',
            "FILE:1: unknown key 'ssh_config'; write it as the option is spelled: 'ssh-config'",
        ),
        ("f = 5\n", "FILE:1: unknown key 'f'; keys are long option names: 'forks'"),
        (
            "[lab]\nforks = 5\n",
            "FILE:2: unknown key 'forks' in [lab]: no command of remoteops lab has --forks",
        ),
        (
            "zzzz = 1\n",
            "FILE:1: unknown key 'zzzz'; keys are the long options of remoteops --help",
        ),
        (
            'profile = "prod"\n',
            "FILE:1: unknown key 'profile': a config file does not choose the profile; "
            "use --profile NAME or REMOTEOPS_PROFILE=NAME",
        ),
        ("[rnu]\nforks = 1\n", "FILE:1: unknown table [rnu]; did you mean [run]?"),
        ("[lab.upp]\n", "FILE:1: unknown table [lab.upp]; did you mean [lab.up]?"),
        ("[xyz]\n", "FILE:1: unknown table [xyz]: remoteops has no command 'xyz'"),
        ("run = 5\n", "FILE:1: run = 5: [run] is a table of the options of remoteops run"),
        ("forks = {a = 1}\n", "FILE:1: forks = {...}: --forks takes a value, not a table"),
        ('forks = "many"\n', 'FILE:1: forks = "many": expected a whole number'),
        ("forks = 2.5\n", "FILE:1: forks = 2.5: expected a whole number"),
        ("\n\n[run]\njson = 'yes'\n", 'FILE:4: json = "yes": expected true or false'),
        ("inventory = ['a', 1]\n", 'FILE:1: inventory = ["a", 1]: expected a string'),
        ("timeout = [1, 2]\n", "FILE:1: timeout = [1, 2]: expected one value, not an array"),
        ("[history]\nenabled = 'no'\n", 'FILE:2: enabled = "no": expected true or false'),
        (
            "[history]\nmax-age = 'ninety days'\n",
            'FILE:2: max-age = "ninety days": expected a duration such as "90d" '
            "(units s, m, h, d, w) or a number of days",
        ),
        (
            "[history]\nkeep = 3\n",
            "FILE:2: unknown key 'keep' in [history]; the keys of [history] are "
            "enabled, max-age, max-size, and the long options of remoteops history --help",
        ),
        (
            "[history]\nmax_age = '1d'\n",
            "FILE:2: unknown key 'max_age' in [history]; write it as the option is spelled: "
            "'max-age'",
        ),
        (
            "[profiles.prod]\nfrks = 1\n",
            "FILE:2: unknown key 'frks' in [profiles.prod]; did you mean 'forks'?",
        ),
        (
            "[profiles.prod.run]\nforks = 'x'\n",
            'FILE:2: forks = "x": expected a whole number',
        ),
        (
            "[profiles.a.profiles.b]\n",
            "FILE:1: profiles cannot be nested in a profile",
        ),
        ("profiles = 3\n", "FILE:1: profiles is a table of tables: write [profiles.NAME]"),
        ("[profiles]\nprod = 3\n", "FILE:2: profile prod: write it as a table [profiles.prod]"),
        ("forks = 1\nforks = ", "FILE:2: not valid TOML: Invalid value (at end of document)"),
        ("forks = 1\njson = tru\n", "FILE:2: not valid TOML: Invalid value (column 8)"),
        ("forks = 1\nforks = 2\n", "FILE:2: not valid TOML: Cannot overwrite a value (column 10)"),
        (b"forks = 1\n# caf\xe9\n", "FILE:2: not UTF-8 text"),
        ("procs = 0\n", "FILE:1: procs = 0: expected a whole number from 1, or 'auto'"),
        ("procs = 'many'\n", "FILE:1: procs = \"many\": expected a whole number from 1, or 'auto'"),
    ],
)
def test_a_bad_file_is_one_line_naming_file_and_line(
    text: str | bytes, expected: str, tmp_path: Path
) -> None:
    assert real_errors(text, tmp_path) == expected


def test_choices_and_ranges_of_the_parameter_types_are_checked(
    files: tuple[Path, Path],
) -> None:
    _, user = files
    write(user, '[run]\nhost-key-policy = "acept-new"\n')
    result = CliRunner().invoke(make_app(), ["run", "all"])
    assert isinstance(result.exception, UsageError)
    assert str(result.exception) == (
        f'{user}:2: host-key-policy = "acept-new": expected one of strict, accept-new; '
        'did you mean "accept-new"?'
    )
    write(user, "forks = 0\n")
    result = CliRunner().invoke(make_app(), ["run", "all"])
    assert (
        str(result.exception) == f"{user}:1: forks = 0: Input should be greater than or equal to 1"
    )


def test_a_profile_that_does_not_exist(files: tuple[Path, Path]) -> None:
    system, user = files
    result = CliRunner().invoke(make_app(), ["--profile", "prod", "run", "all"])
    assert str(result.exception) == (
        f"--profile prod: no profile is defined (looked in {system} or {user})"
    )
    layers(files, "[profiles.prod]\n", "[profiles.staging]\n")
    result = CliRunner().invoke(make_app(), ["--profile", "prd", "run", "all"])
    assert str(result.exception) == (
        f"--profile prd: no such profile in {system} or {user}; did you mean 'prod'?"
    )
    result = CliRunner().invoke(make_app(), ["run", "all"], env={config.PROFILE_ENV: "zzz"})
    assert str(result.exception) == (
        f"REMOTEOPS_PROFILE=zzz: no such profile in {system} or {user}; "
        "the profiles are prod, staging"
    )


def test_the_error_leaves_click_as_the_projects_usage_error(files: tuple[Path, Path]) -> None:
    """Raised inside click's parsing, the UsageError reaches the command line's handler
    as itself (exit 2, one line), not wrapped in one of click's errors."""
    _, user = files
    write(user, "frks = 1\n")
    command = typer.main.get_command(make_app())
    with pytest.raises(UsageError) as caught:
        command.main(["run", "all"], standalone_mode=False)
    assert caught.value.exit_code == 2
    assert str(caught.value) == f"{user}:1: unknown key 'frks'; did you mean 'forks'?"


def test_files_named_by_the_variables_must_exist_default_ones_need_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = typer.main.get_command(real_app)
    monkeypatch.setenv(config.CONFIG_ENV, str(tmp_path / "none.toml"))
    with pytest.raises(UsageError) as caught:
        config.load_config(root, system_path=Path(os.devnull))
    assert str(caught.value) == (
        f"REMOTEOPS_CONFIG={tmp_path}/none.toml: no such file; name a config file"
    )
    monkeypatch.delenv(config.CONFIG_ENV)
    monkeypatch.delenv(config.SYSTEM_CONFIG_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.user_config_path() == tmp_path / "xdg" / "remoteops" / "config.toml"
    assert config.system_config_path() == Path("/etc/remoteops/config.toml")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    assert config.user_config_path() == Path.home() / ".config" / "remoteops" / "config.toml"
    found = config.load_config(
        root, user_path=None, system_path=Path(os.devnull), env={"XDG_CONFIG_HOME": str(tmp_path)}
    )
    assert [f.found for f in found.files] == [True, False]
    assert found.default_map == {}


def test_a_start_with_no_file_to_read_imports_no_config_reader(tmp_path: Path) -> None:
    """No file at the default places, or /dev/null named: nothing to read, and a command
    starts without importing remoteops.config (~7 ms); anything else is read, and a
    named file that is missing is an error (load_config says so)."""
    from remoteops.configpaths import nothing_to_read

    devnull = {config.SYSTEM_CONFIG_ENV: os.devnull}
    xdg = {**devnull, "XDG_CONFIG_HOME": str(tmp_path)}
    assert nothing_to_read(xdg)
    assert nothing_to_read({**devnull, config.CONFIG_ENV: os.devnull})
    assert not nothing_to_read({**devnull, config.CONFIG_ENV: str(tmp_path / "missing.toml")})
    assert not nothing_to_read({config.SYSTEM_CONFIG_ENV: str(tmp_path / "missing.toml")})
    default = tmp_path / "remoteops" / "config.toml"
    default.parent.mkdir()
    default.symlink_to(tmp_path / "nowhere")  # dangling: load_config names it
    assert not nothing_to_read(xdg)

    def imported(*args: str, **env: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "remoteops", "--no-log-file", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "none"), **env},
        )
        assert done.returncode == 0, done.stderr
        return {row.split("|")[-1].strip() for row in done.stderr.splitlines()}

    assert "remoteops.config" not in imported("help", "json")
    user = write(tmp_path / "user.toml", "forks = 5\n")
    assert "remoteops.config" in imported("help", "json", **{config.CONFIG_ENV: str(user)})


def test_a_file_someone_else_can_change_is_refused(tmp_path: Path) -> None:
    """As ssh refuses such an ssh_config: the config can name an ssh_config, whose
    ProxyCommand runs commands."""
    root = typer.main.get_command(real_app)
    path = write(tmp_path / "c.toml", "forks = 1\n", mode=0o664)
    with pytest.raises(UsageError) as caught:
        config.load_config(root, user_path=path, system_path=Path(os.devnull))
    assert str(caught.value) == (
        f"{path}: writable by others than its owner (mode 0664); remoteops does not use a "
        f"config file someone else can change (as ssh): chmod go-w {path}"
    )
    path.chmod(0o600)
    assert config.load_config(root, user_path=path, system_path=Path(os.devnull)).default_map
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    with pytest.raises(UsageError, match=r"dir\.toml: is a directory; the config is a TOML file"):
        config.load_config(root, user_path=directory, system_path=Path(os.devnull))
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root (CI runs as root)")
    os.chown(path, 65534, 65534)
    with pytest.raises(UsageError) as caught:
        config.load_config(root, user_path=path, system_path=Path(os.devnull))
    assert str(caught.value) == (
        f"{path}: owned by uid 65534, neither you nor root; remoteops does not use a "
        "config file someone else can change (as ssh); chown it"
    )


# --------------------------------------------------------------------------- line numbers

TRICKY = '''\
# a comment with [run] and forks = 1 in it
title = "a # not a comment"  # but this is
"quoted.key" = 1
'lit' = 2
a . b . "c.d" = 3
text = """
[not_a_table]
fake = 1
ends with quotes"""""
raw = \'\'\'
[neither]\'\'\'
list = [
  1,  # one
  [2, 3],
  { x = 4 },
]
when = 1979-05-27 07:32:00Z
inline = { one = 1, two = { three = "}" } }
"esc\\"aped" = 5

[table . "sub table"]
key = 6
[[arr]]
k = 7
[[arr]]
k = 8
'''


def test_key_lines_survive_what_a_naive_scan_would_trip_on() -> None:
    lines = config.toml_key_lines(TRICKY)
    assert lines[("title",)] == 2
    assert lines[("quoted.key",)] == 3
    assert lines[("lit",)] == 4
    assert lines[("a", "b", "c.d")] == 5
    assert lines[("a",)] == 5
    assert lines[("text",)] == 6
    assert lines[("raw",)] == 10
    assert ("not_a_table",) not in lines
    assert ("neither",) not in lines
    assert ("fake",) not in lines
    assert lines[("list",)] == 12
    assert lines[("list", 1)] == 14
    assert lines[("list", 2, "x")] == 15
    assert lines[("when",)] == 17
    assert lines[("inline", "two", "three")] == 18
    assert lines[('esc"aped',)] == 19
    assert lines[("table", "sub table")] == 21
    assert lines[("table", "sub table", "key")] == 22
    assert lines[("arr", 1, "k")] == 26


def test_errors_point_at_the_line_of_a_dotted_quoted_or_inline_key(tmp_path: Path) -> None:
    text = 'x = """\nfrks = 1\n"""\n'  # frks is text, not a key
    assert real_errors(text, tmp_path) == (
        "FILE:1: unknown key 'x'; keys are the long options of remoteops --help"
    )
    text = "x = 1\ny = '''\n[run]\nfrks = 1'''\n[lab]\nforks = 2\n"
    assert real_errors(text, tmp_path) == (
        "FILE:1: unknown key 'x'; keys are the long options of remoteops --help"
    )
    assert real_errors(text.replace("x = 1\n", ""), tmp_path) == (
        "FILE:1: unknown key 'y'; keys are the long options of remoteops --help"
    )
    assert real_errors(text.replace("x = 1\n", "").replace("y = ", "env = "), tmp_path) == (
        "FILE:5: unknown key 'forks' in [lab]: no command of remoteops lab has --forks"
    )
    assert real_errors("# c\n\nrun.frks = 1\n", tmp_path) == (
        "FILE:3: unknown key 'frks' in [run]; did you mean 'forks'?"
    )
    assert real_errors('\n"run"."json" = 1\n', tmp_path) == (
        "FILE:2: json = 1: expected true or false"
    )
    assert real_errors("[run]\n\nenv = [\n  'A=1',\n]\nx = { forks = 1 }\n", tmp_path) == (
        "FILE:6: unknown table [run.x]: remoteops run has no command 'x'"
    )
    assert real_errors("[profiles.p]\nrun = { json = true, forks = 'x' }\n", tmp_path) == (
        'FILE:2: forks = "x": expected a whole number'
    )
    assert real_errors('[run]\n"\\u0066orks" = "x"\n', tmp_path) == (
        'FILE:2: forks = "x": expected a whole number'  # an escape in a quoted key
    )
    assert real_errors("[profiles.'a b'.lab]\n'up' . port = 'x'\n", tmp_path) == (
        'FILE:2: port = "x": expected a whole number'
    )


def test_crlf_line_ends_count_as_lines(tmp_path: Path) -> None:
    assert real_errors("forks = 1\r\n\r\nfrks = 2\r\n", tmp_path) == (
        "FILE:3: unknown key 'frks'; did you mean 'forks'?"
    )


# --------------------------------------------------------------------------- sections


def test_history_keys_parse_with_their_units_and_defaults(files: tuple[Path, Path]) -> None:
    _, user = files
    write(user, "[history]\nmax-age = '2w'\n[profiles.big.history]\nmax-size = '1GiB'\n")
    root = typer.main.get_command(real_app)
    found = config.load_config(root)
    assert found.section("history") == {
        "enabled": True,
        "max-age": 14 * 86400.0,
        "max-size": 256 * 1024 * 1024,
    }
    assert str(found.section_source("history", "max-age")) == f"{user}:2"
    assert str(found.section_source("history", "enabled")) == "default"
    found = config.load_config(root, profile="big")
    assert found.section_value("history", "max-size") == 1 << 30
    assert str(found.section_source("history", "max-size")) == f"profile big in {user}:4"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90d", 90 * 86400.0), ("1.5h", 5400.0), (30, 30.0), ("0s", 0.0)]
)
def test_durations(text: Any, seconds: float) -> None:
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"), [("500M", 500 << 20), ("1GiB", 1 << 30), ("2kb", 2048), (10, 10)]
)
def test_sizes(text: Any, size: int) -> None:
    assert config.parse_size(text) == size


@pytest.mark.parametrize("bad", ["-1d", "ten", True, "5x", -3])
def test_bad_durations_and_sizes(bad: Any) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        config.parse_duration(bad)
    with pytest.raises(ValueError, match="expected a size"):
        config.parse_size(bad)


def test_the_example_of_the_docs_is_a_valid_file(files: tuple[Path, Path]) -> None:
    _, user = files
    docs = Path(__file__).resolve().parents[2] / "docs" / "config.md"
    example = docs.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    write(user, example)
    found = config.load_config(typer.main.get_command(real_app), profile="nightly")
    assert found.default_map["run"]["timeout"] == 1800
    assert found.default_map["run"]["procs"] == "4"
    assert found.default_map["lab"]["up"]["hosts"] == 20
    assert found.default_map["ping"]["forks"] == 50
    assert str(found.origin(("run",), "inventory")) == f"profile nightly in {user}:21"
    assert found.section_value("history", "max-size") == 1 << 30


def test_the_history_table_holds_its_keys_and_the_options_of_a_history_command(
    files: tuple[Path, Path],
) -> None:
    """[history] is both the run history's keys and, once there is a `history` command
    group, the table of its options."""
    _, user = files
    write(user, "[history]\nenabled = false\njson = true\n[history.list]\nlimit = 5\n")
    assert json.loads(invoke(["history", "list"]).output) == [True, 5, False]
    assert json.loads(invoke(["history", "list", "-n", "7"]).output) == [True, 7, False]
    write(user, "[history]\nenabld = false\n")
    result = CliRunner().invoke(make_app(), ["history", "list"])
    assert str(result.exception) == (
        f"{user}:2: unknown key 'enabld' in [history]; did you mean 'enabled'?"
    )


def test_what_is_not_a_small_regular_file_is_refused(tmp_path: Path) -> None:
    root = typer.main.get_command(real_app)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo, 0o644)  # opened without waiting for a writer
    with pytest.raises(UsageError) as caught:
        config.load_config(root, user_path=fifo, system_path=Path(os.devnull))
    assert str(caught.value) == f"{fifo}: not a regular file; the config is a TOML file"
    big = write(tmp_path / "big.toml", "# " + "x" * config.MAX_SIZE + "\n")
    with pytest.raises(UsageError) as caught:
        config.load_config(root, user_path=big, system_path=Path(os.devnull))
    assert str(caught.value) == f"{big}: larger than 1024 KiB; is it a config file?"
    found = config.load_config(root, user_path=Path(os.devnull), system_path=Path(os.devnull))
    assert [f.found for f in found.files] == [True, True]
    assert found.default_map == {}

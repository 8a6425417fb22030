"""remoteops.fleet: the library side of what the command line does before a run.

Pure logic (no host is contacted): which ssh_config is chosen, how secret files
are read, which hosts a playbook's plays select, and that the Executor gets the
options it was given. tests/integration/test_fleet.py runs a fleet against the lab.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from remoteops.errors import UsageError
from remoteops.fleet import (
    FleetOptions,
    build_credentials,
    choose_ssh_config,
    inventory_sources,
    load_fleet_inventory,
    read_secret_file,
    resolve_fleet,
    select_or_explain,
    select_play_hosts,
)
from remoteops.playbook import load_playbook


def test_an_ignored_ssh_config_sets_nothing_and_a_given_one_is_read(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host web01\n    User deploy\n    Port 2200\n")
    chosen = choose_ssh_config(config).resolve("web01")
    assert (chosen.user, chosen.port) == ("deploy", 2200)
    assert chosen.sources["user"].startswith(f"{config}:")
    ignored = choose_ssh_config(config, use_ssh_config=False).resolve("web01")
    assert ignored.port == 22
    assert "user" not in ignored.options


def test_a_secret_file_loses_its_final_newline_and_bad_ones_name_the_option(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "pass"
    secret.write_text("s3cret\n\n")
    assert read_secret_file(secret, "--key-passphrase-file") == "s3cret"
    secret.write_text("\n")
    with pytest.raises(UsageError, match=r"^--become-password-file .*: the file is empty"):
        read_secret_file(secret, "--become-password-file")
    secret.write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError, match="not UTF-8 text"):
        read_secret_file(secret, "--key-passphrase-file")


def test_a_bad_passphrase_file_is_reported_before_the_password_is_asked(tmp_path: Path) -> None:
    asked: list[str] = []
    missing = tmp_path / "missing"
    with pytest.raises(UsageError, match="--key-passphrase-file"):
        build_credentials(passphrase_file=missing, ask_password=lambda: asked.append("") or "pw")
    assert asked == []
    good = tmp_path / "good"
    good.write_text("phrase\n")
    build_credentials(passphrase_file=good, ask_password=lambda: asked.append("") or "pw")
    assert asked == [""]


def test_the_default_inventory_is_used_only_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REMOTEOPS_INVENTORY", "from-env.yml")
    assert inventory_sources(None) == ["from-env.yml"]
    assert inventory_sources(["a.yml", "b,c"]) == ["a.yml", "b,c"]


def test_select_or_explain_names_the_term_and_the_inventory() -> None:
    inventory = load_fleet_inventory(["web01,web02,db01"])
    assert [h.name for h in select_or_explain(inventory, "web*", None)] == ["web01", "web02"]
    with pytest.raises(UsageError, match=r"nosuch.* in hosts\.yml; see `remoteops inventory"):
        select_or_explain(inventory, "nosuch", None, where="hosts.yml")


def test_a_fleet_carries_its_options_into_targets_and_executor(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("not read before a connection\n")
    options = FleetOptions(
        inventory=("web01,web02,db01",),
        limit="web*",
        forks=3,
        user="deploy",
        port=2200,
        key_files=(key,),
        use_ssh_config=False,
        known_hosts=tmp_path / "known_hosts",
        host_key_policy="accept-new",
        connect_timeout=4.0,
        retries=2,
        command_timeout=9.0,
        keepalive_interval=7.0,
        keepalive_count=5,
    )
    asked: list[str] = []
    fleet = resolve_fleet("all", options, ask_password=lambda: asked.append("") or "pw")
    assert [t.name for t in fleet.targets] == ["web01", "web02"]
    assert {(t.user, t.port, t.identity_files) for t in fleet.targets} == {
        ("deploy", 2200, (str(key),))
    }
    assert asked == [""]
    executor = fleet.executor
    assert executor.settings.host_key_policy == "accept-new"
    assert executor.settings.keepalive_interval == 7.0
    assert executor.settings.keepalive_count_max == 5
    assert (executor.timeouts.connect, executor.timeouts.command) == (4.0, 9.0)
    assert (executor.limits.max_workers, executor.limits.retries) == (3, 2)


def test_each_play_selects_its_hosts_and_an_empty_play_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    book = tmp_path / "book.yml"
    book.write_text(
        "- name: web\n  hosts: web*\n  steps:\n    - ping:\n"
        "- name: none\n  hosts: nosuch\n  steps:\n    - ping:\n"
    )
    playbook = load_playbook(book)
    inventory = load_fleet_inventory(["web01,web02,db01"])
    with caplog.at_level(logging.WARNING):
        selected = select_play_hosts(playbook, inventory, None)
    assert list(selected.values()) == [["web01", "web02"], []]
    assert f"{book}:6: play 'none' is skipped" in caplog.text
    with pytest.raises(UsageError, match=r"book\.yml:2: play 'web'.*; see `remoteops inventory"):
        select_play_hosts(playbook, inventory, "db01")

"""Reading playbooks: structure, types and templates checked with FILE:LINE messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from remoteops.playbook import PlaybookError
from remoteops.playbook.model import Play, parse_playbook


def parse(text: str, tmp_path: Path | None = None) -> object:
    path = tmp_path / "book.yml" if tmp_path else Path("book.yml")
    return parse_playbook(text, path=path)


def error_of(text: str) -> str:
    with pytest.raises(PlaybookError) as info:
        parse(text)
    assert info.value.exit_code == 2
    return str(info.value)


GOOD = """\
- name: rolling
  hosts: web:&eu
  serial: [1, "25%"]
  max_fail_percentage: 10
  vars:
    port: 8080
    url: "http://{{ inventory_hostname }}:{{ port }}/"
  steps:
    - name: check
      run: curl -fsS {{ url }}
      register: health
      timeout: 5
      env: {LANG: C}
    - name: upload
      put: {src: files/app.conf, dest: /etc/app/, mode: "0644"}
    - get: {src: [/var/log/a.log, /var/log/b.log], dest: out}
    - ping:
    - assert:
        that: [health.rc == 0, "'ok' in health.stdout"]
        msg: "{{ inventory_hostname }} is unhealthy"
    - fail: stop here
      when: health.rc != 0
"""


def test_a_good_playbook_parses_with_numbers_and_lines() -> None:
    book = parse(GOOD)
    (play,) = book.plays  # type: ignore[attr-defined]
    assert play.hosts == "web:&eu"
    assert play.serial == (1, 0.25)
    assert play.max_fail_percentage == 10
    assert [s.action for s in play.steps] == ["run", "put", "get", "ping", "assert", "fail"]
    assert [s.number for s in play.steps] == [1, 2, 3, 4, 5, 6]
    assert play.steps[0].line == 9
    assert play.steps[0].register == "health"
    assert play.steps[0].timeout == 5.0
    assert play.steps[1].args["mode"] == 0o644
    assert play.steps[2].name == "get ['/var/log/a.log', '/var/log/b.log']"
    assert play.steps[5].args["msg"].source == "stop here"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "empty"),
        ("hosts: web\n", 1, "list of plays"),
        ("- hosts: web\n", 1, "no steps: key"),
        ("- steps: [{ping: }]\n", 1, "no hosts: key"),
        ("- hosts: web\n  stepz: []\n", 2, "did you mean 'steps'"),
        ("- hosts: web\n  steps:\n    - ping:\n      regster: x\n", 4, "did you mean 'register'"),
        ("- hosts: web\n  steps:\n    - name: x\n", 3, "has no action"),
        ("- hosts: web\n  steps:\n    - run: a\n      ping:\n", 4, "two actions"),
        ("- hosts: web\n  steps:\n    - run: a\n      timeout: soon\n", 4, "timeout"),
        ("- hosts: web\n  steps:\n    - run: a\n      become: yes please\n", 4, "true or false"),
        ("- hosts: web\n  serial: 0\n  steps: [{ping: }]\n", 2, "serial"),
        ("- hosts: web\n  serial: ['120%']\n  steps: [{ping: }]\n", 2, "at most 100%"),
        ("- hosts: web\n  max_fail_percentage: 101\n  steps: [{ping: }]\n", 2, "0 to 100"),
        ("- hosts: web\n  vars: [1]\n  steps: [{ping: }]\n", 2, "mapping"),
        ("- hosts: web\n  vars:\n    bad-name: 1\n  steps: [{ping: }]\n", 3, "variable name"),
        ("- hosts: web\n  steps:\n    - ping:\n      register: groups\n", 4, "built-in"),
        ("- hosts: web\n  steps:\n    - run: echo {{ x\n", 3, "template"),
        ('- hosts: web\n  steps:\n    - run: echo "{{ x }}"\n', 3, "double quotes"),
        ('- hosts: web\n  steps:\n    - when: "{{ x }}"\n      ping:\n', 3, "without {{ }}"),
        ("- hosts: web\n  steps:\n    - put: {src: a}\n", 3, "needs dest"),
        ("- hosts: web\n  steps:\n    - put: {src: a, dest: /b, mode: '9z'}\n", 3, "octal"),
        ("- hosts: web\n  steps:\n    - assert: {msg: hi}\n", 3, "needs that"),
        ("- hosts: web\n  steps:\n    - ping:\n      pty: true\n", 4, "does not apply"),
        ("- hosts: web\n  steps:\n    - script: missing.sh\n", 3, "no such local file"),
        ("- hosts: web\n  steps:\n    - ping:\n    - ping:\n      ping:\n", 5, "duplicate key"),
        ("- hosts: web\n  steps:\n    - run: !!python/name:os.system\n", 3, "Python tags"),
    ],
)
def test_problems_name_their_line(text: str, line: int, fragment: str) -> None:
    message = error_of(text)
    assert message.startswith(f"book.yml:{line}: "), message
    assert fragment in message
    assert "\n" not in message


def test_script_paths_are_relative_to_the_playbook(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "check.sh").write_text("echo hi\n")
    book = parse("- hosts: all\n  steps:\n    - script: files/check.sh --fast {{ x }}\n", tmp_path)
    step = book.plays[0].steps[0]  # type: ignore[attr-defined]
    assert step.args["path"].source == "files/check.sh"
    assert step.args["args"].source == "--fast {{ x }}"


@pytest.mark.parametrize(
    ("serial", "hosts", "expected"),
    [
        ((), 5, [5]),
        ((2,), 5, [2, 2, 1]),
        ((1, 0.25), 20, [1, 5, 5, 5, 4]),
        ((1, 0.1, 0.5), 20, [1, 2, 10, 7]),
        ((0.01,), 3, [1, 1, 1]),
        ((10,), 3, [3]),
    ],
)
def test_serial_batches_repeat_the_last_size(
    serial: tuple[int | float, ...], hosts: int, expected: list[int]
) -> None:
    play = Play(index=1, line=1, name="p", hosts="all", steps=(), serial=serial)
    names = [f"h{i}" for i in range(hosts)]
    batches = play.batches(names)
    assert [len(b) for b in batches] == expected
    assert [h for b in batches for h in b] == names

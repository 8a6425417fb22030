"""Names templates read are checked against the inventory before any host is contacted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from remoteops.playbook import PlaybookError, check_playbook, resolve_start_at
from remoteops.playbook.model import Playbook, parse_playbook

HOST_VARS: dict[str, dict[str, Any]] = {
    "web01": {"port": 80, "only_web01": 1},
    "web02": {"port": 81},
}


def book(text: str) -> Playbook:
    return parse_playbook(text, path=Path("book.yml"))


def check(text: str, *, extra: dict[str, Any] | None = None, start_at: int | None = None) -> None:
    playbook = book(text)
    check_playbook(
        playbook,
        play_hosts={p.index: ["web01", "web02"] for p in playbook.plays},
        host_vars=lambda h: HOST_VARS[h],
        extra_vars=extra or {},
        start_at=start_at,
    )


def error_of(text: str, **kwargs: Any) -> str:
    with pytest.raises(PlaybookError) as info:
        check(text, **kwargs)
    return str(info.value)


OK = """\
- hosts: web
  vars:
    url: "http://{{ inventory_hostname }}:{{ port }}"
  steps:
    - run: curl {{ url }} {{ extra | default('') }} {{ groups['web'] | length }}
      register: r
      changed_when: result.rc == 0 and r.stdout != ''
    - assert:
        that: r.rc == 0 and hostvars[inventory_hostname].port > 0
    - run: echo {{ only_web01 }}
      when: only_web01 is defined
"""


def test_defined_names_pass() -> None:
    check(OK)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("- hosts: web\n  steps:\n    - run: echo {{ prot }}\n", 3, "did you mean 'port'"),
        ("- hosts: web\n  steps:\n    - run: echo {{ only_web01 }}\n", 3, "for host web02"),
        (
            "- hosts: web\n  steps:\n    - ping:\n      when: r.rc == 0\n    - run: x\n"
            "      register: r\n",
            4,
            "runs after this one",
        ),
        (
            "- hosts: web\n  steps:\n    - run: x\n      register: r\n    - assert:\n"
            "        that: r.exit_code == 0\n",
            6,
            "has no 'exit_code'",
        ),
        (
            "- hosts: web\n  steps:\n    - assert:\n        that: nothing_registered.rc == 0\n",
            4,
            "no registered result",
        ),
        ("- hosts: web\n  vars:\n    a: '{{ b }}'\n  steps:\n    - ping:\n", 2, "'b'"),
    ],
)
def test_undefined_names_name_their_line(text: str, line: int, fragment: str) -> None:
    message = error_of(text)
    assert message.startswith(f"book.yml:{line}: "), message
    assert fragment in message


def test_extra_vars_define_names() -> None:
    check("- hosts: web\n  steps:\n    - run: echo {{ prot }}\n", extra={"prot": "x"})


START = """\
- hosts: web
  steps:
    - name: first
      run: hostname
      register: h
    - name: second
      run: echo {{ h.stdout }}
"""


def test_start_at_resolves_names_and_numbers() -> None:
    playbook = book(START)
    assert resolve_start_at(playbook, "second") == 2
    assert resolve_start_at(playbook, "1") == 1
    with pytest.raises(PlaybookError, match="did you mean 'second'"):
        resolve_start_at(playbook, "secnd")
    with pytest.raises(PlaybookError, match="steps 1 to 2"):
        resolve_start_at(playbook, "3")


def test_start_at_refuses_steps_that_read_skipped_results() -> None:
    message = error_of(START, start_at=2)
    assert message.startswith("book.yml:7: ")
    assert "--start-at skips" in message
    check(START, start_at=1)


@pytest.mark.parametrize(
    ("steps", "fragment"),
    [
        ("    - analyze: {analyzer: grep:ERROR, src: out}\n", "no earlier step registers it"),
        (
            "    - ping:\n      register: out\n    - analyze: {analyzer: grep:ERROR, src: out}\n",
            "a ping result has no output",
        ),
    ],
)
def test_analyze_needs_an_earlier_output(steps: str, fragment: str) -> None:
    assert fragment in error_of("- hosts: web\n  steps:\n" + steps)


def test_analyze_specs_are_checked_when_the_playbook_is_read() -> None:
    with pytest.raises(PlaybookError, match=r"^book.yml:5: grep:\(: bad regex"):
        book(
            "- hosts: web\n  steps:\n    - run: x\n"
            "      register: out\n    - analyze: {analyzer: 'grep:(', src: out}\n"
        )
    check(
        "- hosts: web\n  steps:\n    - run: x\n      register: out\n"
        "    - analyze: {analyzer: 'count:ERROR', src: out}\n"
    )


TWO_PLAYS = """\
- hosts: web01
  steps:
    - name: probe
      run: hostname
      register: r
- hosts: web
  steps:
    - run: echo {{ r.stdout }}
    - run: echo {{ r.stdout }}
      when: r is defined
"""


def test_a_result_from_an_earlier_play_exists_only_on_its_hosts() -> None:
    playbook = book(TWO_PLAYS)
    first, second = (p.index for p in playbook.plays)
    with pytest.raises(PlaybookError) as info:
        check_playbook(
            playbook,
            play_hosts={first: ["web01"], second: ["web01", "web02"]},
            host_vars=lambda h: HOST_VARS[h],
            extra_vars={},
        )
    message = str(info.value)
    assert message.startswith("book.yml:8: "), message
    assert "'r' is registered by step 1 'probe'" in message
    assert "does not run on web02" in message
    # The same plays over the same hosts: r exists everywhere it is read.
    check_playbook(
        playbook,
        play_hosts={first: ["web01", "web02"], second: ["web01", "web02"]},
        host_vars=lambda h: HOST_VARS[h],
        extra_vars={},
    )

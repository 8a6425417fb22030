"""``--become``'s sudo command lines and messages (pure logic, and the local /bin/sh)."""

from __future__ import annotations

import subprocess

import pytest

from remoteops.become import Become, sudo_failure
from remoteops.execution import CommandSpec
from remoteops.session import PromptAnswer
from remoteops.target import Target


def _target(
    become: bool = False, become_user: str | None = None, become_password: str | None = None
) -> Target:
    return Target(
        name="web01",
        address="127.0.0.1",
        port=22,
        user="rolab",
        become=become,
        become_user=become_user,
        become_password=become_password,
    )


def test_options_beat_the_inventory_and_become_user_alone_does_nothing() -> None:
    inventory = _target(become=True, become_user="app", become_password="inv")
    assert Become.choose(False, None, None, inventory) == Become("app", "inv")
    assert Become.choose(True, "db", "cli", inventory) == Become("db", "cli")
    assert Become.choose(False, "db", "cli", _target()) is None
    assert Become.choose(True, None, None, _target()) == Become("root", None)


def test_the_password_goes_on_stdin_never_on_the_command_line() -> None:
    with_password = Become("app's", "s3cret")
    assert with_password.prefix == "sudo -S -p '' -u 'app'\"'\"'s' -- "
    assert "s3cret" not in with_password.command("tar -x")
    assert with_password.stdin(b"DATA").startswith(b"s3cret\n")
    assert "s3cret" not in repr(with_password)
    without = Become("root")
    assert without.prefix == "sudo -n -u root -- "
    assert without.stdin(b"DATA") == b"DATA"
    assert without.password_line == b""


def test_run_and_transfers_build_the_same_sudo_command() -> None:
    spec = CommandSpec(command="id -u", become=True, become_password="pw")
    command, stdin, answer = spec.remote_command(_target())
    become = Become("root", "pw")
    assert (command, stdin, answer) == (become.command("id -u"), become.stdin(b""), None)
    assert spec.run_as(_target()) == (become.prefix, b"pw\n")


def test_on_a_terminal_the_password_waits_for_a_prompt_of_its_own() -> None:
    spec = CommandSpec(command="id -u", pty=True, become=True, become_password="pw")
    command, stdin, answer = spec.remote_command(_target())
    assert stdin is None
    assert answer is not None
    prompt = command.split("-p ")[1].split()[0]
    assert prompt.startswith("'[remoteops-sudo-")
    assert command.endswith("-u root -- sh -c 'id -u'")
    again, _, _ = spec.remote_command(_target())
    assert again != command  # a new prompt each time: a host cannot guess it ahead


@pytest.mark.parametrize("sudo_read_it", [True, False], ids=["sudo-read", "sudo-did-not-ask"])
def test_the_command_reads_only_what_follows_the_marker(sudo_read_it: bool) -> None:
    """Whether or not sudo took the password line, tar or sftp-server never see it."""
    become = Become("root", "pw")
    stdin = become.stdin(b"payload\nwith lines\n\x00binary")
    if sudo_read_it:
        stdin = stdin.removeprefix(become.password_line)
    script = become.command("exec cat").removeprefix(become.prefix + "sh -c ")
    result = subprocess.run(
        f"sh -c {script}", shell=True, input=stdin, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"payload\nwith lines\n\x00binary"


def test_a_stream_without_the_marker_stops_before_the_command() -> None:
    script = Become("root", "pw").command("exec cat").removeprefix("sudo -S -p '' -u root -- ")
    result = subprocess.run(
        script, shell=True, input=b"a\nb\nc\n", capture_output=True, check=False
    )
    assert (result.returncode, result.stdout) == (125, b"")


def test_sudo_refusals_are_said_in_one_line() -> None:
    with_password, without = Become("root", "pw"), Become("root")
    wrong = (
        "Sorry, try again.\n\nsudo: no password was provided\nsudo: 1 incorrect password attempt\n"
    )
    assert sudo_failure(with_password, wrong) == (
        "become: incorrect sudo password (from --become-password-file or ansible_become_password)"
    )
    assert sudo_failure(without, "sudo: a password is required\n").startswith(
        "become: sudo asks for a password; give it with --become-password-file"
    )
    assert sudo_failure(Become("nosuch", "pw"), "sudo: unknown user nosuch\nsudo: error x\n") == (
        "become: sudo -u nosuch failed: unknown user nosuch"
    )
    assert sudo_failure(without, "") == "become: sudo -u root failed: no message"


class _Sent:
    """What PromptAnswer sends: a stand-in for the channel's sendall (pure logic)."""

    def __init__(self) -> None:
        self.data = b""

    def sendall(self, data: bytes) -> None:
        self.data += data


def _feed(answer: PromptAnswer, channel: _Sent, *chunks: bytes) -> bytes:
    shown = b"".join(answer.feed(channel, chunk) for chunk in chunks)  # type: ignore[arg-type]
    return shown + answer.finish()


def test_the_prompt_is_answered_once_and_never_shown_even_split_across_reads() -> None:
    channel = _Sent()
    answer = PromptAnswer(b"[p-1]", b"pw\n", b"input\n")
    assert _feed(answer, channel, b"[p", b"-1", b"]", b"\r", b"\nroot\r\n") == b"root\r\n"
    assert channel.data == b"pw\ninput\n"
    assert answer.state == "answered"


def test_output_before_any_prompt_means_sudo_did_not_ask() -> None:
    channel = _Sent()
    answer = PromptAnswer(b"[p-1]", b"pw\n", None)
    assert _feed(answer, channel, b"[p", b"root\r\n") == b"[proot\r\n"
    assert channel.data == b""  # the password never left
    assert answer.state == "skipped"


def test_a_second_prompt_is_a_refused_password_and_interrupts_sudo() -> None:
    channel = _Sent()
    answer = PromptAnswer(b"[p-1]", b"pw\n", None)
    shown = _feed(answer, channel, b"[p-1]", b"\r\nSorry, try again.\r\n[p-1]")
    assert shown == b"Sorry, try again.\r\n"
    assert channel.data == b"pw\n\x03"
    assert answer.refused

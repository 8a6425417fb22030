"""Stopping a remote command for real, and saying so only when it is confirmed.

The SSH ``signal`` request is not enough: OpenSSH's sshd refuses it for a
session without privilege separation, which is every root login
(``session_signal_req: session signalling requires privilege separation``); a
command that ignores SIGHUP outlives the channel's close; and under ``sudo``
(``Defaults use_pty``) the command runs in a session of its own, as another
user, out of reach of the login's signals.

So when a command must stop (deadline, Ctrl-C, SIGTERM), and only then, a
second exec channel is opened on the same connection and runs ``STOP_SCRIPT``
with ``/bin/sh``, through the same ``sudo`` as the command when it used
``--become``. The script:

1. walks ``/proc`` from its own PID up to the nearest ``sshd`` (or
   ``sshd-session``, ``dropbear``) ancestor: the process serving this
   connection;
2. takes that process's other children (not an ``sftp-server``): the command
   this connection started, which sshd made the leader of a session of its own;
3. adds their descendants that stayed in the same session, the processes a
   ``sudo`` moved into a new session (its pty), and every process still in one
   of those sessions (orphans re-parented to init); a descendant that detached
   itself with ``setsid`` is left alone, as with any SSH client;
4. when the command's first process has already exited (nothing is left to
   walk from), takes instead the processes started while the command ran, whose
   session leader is gone, that carry this connection's ``SSH_CONNECTION`` and
   hold a pipe or terminal on stdin, stdout or stderr (what keeps the command's
   output open); one it may not inspect (another user's) is reported unchecked;
5. sends them SIGTERM, waits up to a second, sends SIGKILL to what is left,
   waits up to another second, and prints one verdict line
   (``parse_helper_output``).

The script is sent on stdin, after a one-line bootstrap that skips up to the
marker line: whatever ``sudo -S`` did not read (the password, when sudo did not
ask for it) is discarded, never run. The bootstrap is valid in any login shell
(one line; no backslash or single quote inside its quotes).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

__all__ = ["StopReport", "helper_command", "helper_stdin", "parse_helper_output"]

_MARKER = "#remoteops-stop"
_BOOTSTRAP = f'while read -r l; do [ "$l" = "{_MARKER}" ] && break; done; exec /bin/sh -s'

# awk, over every /proc/PID/stat: prints shell assignments for ``eval``.
# Inputs: me (the script's PID), sess (sessions already known to be the
# command's), prev (PID:START of processes already known to be the command's),
# sweep (1: list orphan candidates if the command's first process is gone),
# since (the earliest start time, in clock ticks, of a candidate).
_SCAN = r"""
{
  o = index($0, "(")
  if (o == 0 || !match($0, /\) [^)]*$/)) next
  pid = $1
  c = substr($0, o + 1, RSTART - o - 1)
  gsub(/[^A-Za-z0-9.+-]/, "_", c)
  split(substr($0, RSTART + 2), f, " ")
  comm[pid] = c; state[pid] = f[1]; ppid[pid] = f[2]; sid[pid] = f[4]; start[pid] = f[20]
}
function server(p) {
  return comm[p] == "sshd" || comm[p] == "sshd-session" || comm[p] == "dropbear"
}
function gone(p) { return !(p in state) || state[p] == "Z" }
END {
  p = me; up = ""
  for (hops = 0; (p in ppid) && !server(p) && hops < 200; hops++) {
    mine[p] = 1; up = up " " p; p = ppid[p]
  }
  if (!(p in ppid) || !server(p)) { print "none=1"; exit }
  top = p; roots = 0
  k = split(sess, s, " "); for (i = 1; i <= k; i++) insess[s[i]] = 1
  k = split(prev, s, " "); for (i = 1; i <= k; i++) was[s[i]] = 1
  for (q in ppid)
    if (ppid[q] == top && !(q in mine) && comm[q] != "sftp-server") {
      roots++
      if (sid[q] == q && !(q in insess)) { sess = sess " " q; insess[q] = 1 }
    }
  for (q in ppid)
    if (!gone(q) && !(q in mine) && q != top)
      if ((sid[q] in insess) || ((q ":" start[q]) in was)) t[q] = 1
  for (rounds = 0; rounds < 1000; rounds++) {
    grew = 0
    for (q in ppid) {
      if ((q in t) || gone(q) || (q in mine) || !(ppid[q] in t)) continue
      if (sid[q] == sid[ppid[q]] || comm[ppid[q]] == "sudo") { t[q] = 1; grew = 1 }
    }
    if (!grew) break
  }
  pids = ""; left = ""; known = ""; cand = ""; n = 0
  for (q in t) {
    if (sid[q] == q && !(q in insess)) { sess = sess " " q; insess[q] = 1 }
    pids = pids " " q; left = left " " q ":" comm[q]; known = known " " q ":" start[q]; n++
  }
  if (sweep && !roots)
    for (q in ppid)
      if (!(q in t) && !(q in mine) && !gone(q) && sid[q] > 0 && sid[q] != q && gone(sid[q]) \
          && start[q] >= since)
        cand = cand " " q ":" start[q] ":" comm[q]
  printf "sess=\"%s\" prev=\"%s\" pids=\"%s\" left=\"%s\" n=%d chain=\"%s\" cand=\"%s\"\n", \
    sess, known, pids, left, n, up, cand
}
"""

_SCRIPT = r"""
export LC_ALL=C
PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH
say() { echo "remoteops-stop: $*"; exit 0; }
for tool in awk cat tr grep ls; do
  command -v $tool >/dev/null 2>&1 || say "unsupported the host has no $tool"
done
[ -r /proc/$$/stat ] || say "unsupported the host has no Linux /proc"
me=$$ sess= prev= pids= left= n=0 none= chain= cand= unchecked=
hz=$(getconf CLK_TCK 2>/dev/null) || hz=100
read -r uptime rest < /proc/uptime
scan() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v me="$me" -v sess="$sess" -v prev="$prev" \
    -v sweep="$1" -v since="$since" '@SCAN@'
}
since=$(awk -v u="${uptime:-0}" -v hz="${hz:-100}" -v e="$elapsed" \
  'BEGIN { printf "%d", (u - e - 2) * hz }')
environ() { tr "\000" "\n" 2>/dev/null < "/proc/$1/environ"; }
uid_of() {
  u=$(awk "/^Uid:/ { print \$2; exit }" "/proc/$1/status" 2>/dev/null)
  echo "${u:-unknown}"
}
if sleep 0.01 2>/dev/null; then nap=0.1 polls=10; else nap=1 polls=1; fi
verdict() {
  [ -n "$unchecked" ] && say "unchecked $unchecked"
  say gone
}
wait_gone() {
  i=0
  while [ "$i" -lt "$polls" ]; do
    sleep "$nap"; eval "$(scan)"; [ -n "$pids" ] || verdict
    i=$((i + 1))
  done
}
eval "$(scan sweep)"
[ -z "$none" ] || say "unsupported no sshd process serves this command, or its /proc is hidden"
if [ -n "$cand" ]; then
  conn=$SSH_CONNECTION
  for a in $chain; do
    [ -z "$conn" ] || break
    conn=$(environ "$a" | grep "^SSH_CONNECTION=" | head -n 1)
    conn=${conn#SSH_CONNECTION=}
  done
  [ -n "$conn" ] || say "unsupported this session has no SSH_CONNECTION to recognise its processes"
  for e in $cand; do
    q=${e%%:*}
    if ! vars=$(environ "$q"); then
      [ -e "/proc/$q" ] || continue
      unchecked="$unchecked $q:${e##*:}:$(uid_of "$q")"
      continue
    fi
    printf "%s\n" "$vars" | grep -qxF "SSH_CONNECTION=$conn" || continue
    ls -l "/proc/$q/fd/0" "/proc/$q/fd/1" "/proc/$q/fd/2" 2>/dev/null |
      grep -q -e "pipe:" -e "/dev/pts/" || continue
    prev="$prev ${e%:*}"
  done
  eval "$(scan)"
fi
[ -n "$pids" ] || verdict
kill -s TERM $pids 2>/dev/null
wait_gone
kill -s KILL $pids 2>/dev/null
wait_gone
report=
for e in $left; do
  report="$report $e:$(uid_of "${e%%:*}")"
done
say "left $n$report"
""".replace("@SCAN@", _SCAN)


def helper_command(sudo_prefix: str = "") -> str:
    """The exec string that runs the stop script from stdin, under ``sudo_prefix`` if any."""
    return f"{sudo_prefix}/bin/sh -c {shlex.quote(_BOOTSTRAP)}"


def helper_stdin(stdin_prefix: bytes, elapsed: float) -> bytes:
    """The stop script's stdin: sudo's password line if any, the marker, then the script.

    ``elapsed`` is how long the command has run: processes older than that are
    never taken for ones it left behind.
    """
    script = f"{_MARKER}\nelapsed={max(0, int(elapsed)) + 1}\n{_SCRIPT}"
    return stdin_prefix + script.encode()


@dataclass(frozen=True, slots=True)
class StopReport:
    """Whether a stopped command is confirmed gone from its host, and if not, why."""

    confirmed: bool
    detail: str = ""
    signalled: bool = False
    """True when the helper sent SIGTERM and SIGKILL itself (nothing is left to try)."""


_ITEM = re.compile(r"^(\d+):([^:]*):(.*)$")


def parse_helper_output(exit_code: int | None, stdout: bytes, stderr: bytes) -> StopReport:
    """Read the stop script's verdict: confirmed only on ``remoteops-stop: gone``.

    The other verdicts: ``left N PID:NAME:UID...`` (still running after
    SIGKILL), ``unchecked PID:NAME:UID...`` (may be the command's, not
    permitted to look) and ``unsupported WHY``.
    """
    lines = [
        line.strip()
        for line in stdout.decode("utf-8", "replace").splitlines()
        if line.strip().startswith("remoteops-stop:")
    ]
    if not lines:
        why = _one_line(stderr) or _one_line(stdout) or f"exit code {exit_code}"
        return StopReport(False, f"the stop helper failed ({why})")
    word, _, rest = lines[-1].removeprefix("remoteops-stop:").strip().partition(" ")
    if word == "gone":
        return StopReport(True, signalled=True)
    if word == "unsupported":
        return StopReport(False, rest or "the host cannot list its processes")
    if word == "left":
        count, _, items = rest.partition(" ")
        shown, number = _processes(items, count)
        noun = "process still runs" if number == 1 else "processes still run"
        return StopReport(
            False,
            f"{number} {noun} after SIGTERM and SIGKILL: {shown} "
            "(another user's processes need --become)",
            signalled=True,
        )
    if word == "unchecked":
        shown, number = _processes(rest, "")
        noun = "process" if number == 1 else "processes"
        return StopReport(
            False,
            f"{number} {noun} started while it ran could not be checked (another "
            f"user's; --become can): {shown}",
            signalled=True,
        )
    said = _one_line(f"{word} {rest}".encode())
    return StopReport(False, f"the stop helper said {said!r}")


def _processes(items: str, count: str) -> tuple[str, int]:
    """``PID 12 sleep (uid 0), ...`` for up to five ``PID:NAME:UID`` items, and their number."""
    found = [m.groups() for m in map(_ITEM.match, items.split()) if m]
    number = int(count) if count.isdigit() else len(found)
    shown = ", ".join(f"PID {pid} {name} (uid {uid})" for pid, name, uid in found[:5])
    if number > min(len(found), 5):
        shown += f", and {number - min(len(found), 5)} more"
    return shown, number


def _one_line(data: bytes) -> str:
    for line in data.decode("utf-8", "replace").splitlines():
        text = line.strip()
        if text:
            return repr(text[:200])[1:-1]
    return ""

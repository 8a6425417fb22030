"""ssh_config resolution: what ``ssh -G HOST`` would say, for the keys remoteops uses.

Our own resolver (``paramiko.SSHConfig`` misses first-match for several keys, ``Match user``
after ``-l``, ``Include`` and the second "final" pass), written against OpenSSH 9.2:

* The first value obtained for a key wins; ``IdentityFile``, ``CertificateFile``, the forwards
  and ``SendEnv`` accumulate in order. A file ``IdentityFile`` or ``CertificateFile`` already
  names (the same text, from another block or the second pass) is not added again, as in ssh.
* ``Host`` patterns (``*``, ``?``, ``!negation``, one pattern per word; commas are literal, as
  in ssh) match the host *as given*, case-sensitively. ``Match host`` matches the ``HostName``
  substituted so far, ``Match originalhost`` the host as given; both case-insensitively and as
  comma lists. ``Match user`` sees an explicit user (``ssh -l``) exactly like ssh does.
* ``Match final`` / ``Match canonical`` are false in the first pass. When a ``Match final``
  appears (or ``CanonicalizeHostname`` is on; no DNS lookup is made here) the files are read a
  second time with ``Host`` patterns matched against the resolved host name, as ssh does.
* ``Match exec`` runs a command per host, so a config holding one is refused with an
  :class:`~remoteops.errors.InventoryError` unless ``allow_exec=True``.
* ``Include`` accepts globs, ``~`` (``$HOME``, as glibc's ``glob`` does) and relative paths
  (``~/.ssh`` for the user config, ``/etc/ssh`` for the system one); an Include inside a
  ``Host``/``Match`` block only applies when that block matches. Missing files are ignored.
* ``HostName`` expands ``%h`` and ``%%``; ``IdentityFile``, ``CertificateFile`` and
  ``UserKnownHostsFile`` expand ``~`` (the passwd home, not ``$HOME``), ``${ENV}`` and
  ``%C %L %i %k %l %n %p %d %h %r %u %%``.

Files are parsed and patterns compiled once, when the :class:`SSHConfig` is built; each
:meth:`SSHConfig.resolve` walks the parsed statements and caches its answer.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import pwd
import re
import socket
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from remoteops.errors import InventoryError, UsageError

__all__ = [
    "DEFAULT_GLOBAL_KNOWN_HOSTS",
    "DEFAULT_IDENTITY_FILES",
    "DEFAULT_USER_KNOWN_HOSTS",
    "SYSTEM_CONFIG_PATH",
    "JumpHost",
    "SSHConfig",
    "SSHHostConfig",
    "parse_proxy_jump",
]

logger = logging.getLogger(__name__)

#: Where ssh reads its system-wide configuration.
SYSTEM_CONFIG_PATH: Final = Path("/etc/ssh/ssh_config")
#: Identity files ssh tries when the config names none (unexpanded, as ``ssh -G`` prints them).
DEFAULT_IDENTITY_FILES: Final = (
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
)
#: ``UserKnownHostsFile`` when the config sets none (unexpanded).
DEFAULT_USER_KNOWN_HOSTS: Final = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
#: ``GlobalKnownHostsFile`` when the config sets none.
DEFAULT_GLOBAL_KNOWN_HOSTS: Final = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")

_SYSTEM_SSH_DIR: Final = "/etc/ssh"
_MAX_INCLUDE_DEPTH: Final = 16
_WHITESPACE: Final = " \t\r\n"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Every keyword OpenSSH 9.2 accepts (probed against /usr/bin/ssh), after the aliases below.
_KNOWN_KEYWORDS: Final = _words(
    """
    addkeystoagent addressfamily batchmode bindaddress bindinterface canonicaldomains
    canonicalizefallbacklocal canonicalizehostname canonicalizemaxdots
    canonicalizepermittedcnames casignaturealgorithms certificatefile checkhostip ciphers
    clearallforwardings compression connectionattempts connecttimeout controlmaster
    controlpath controlpersist dynamicforward enableescapecommandline enablesshkeysign
    escapechar exitonforwardfailure fingerprinthash forkafterauthentication forwardagent
    forwardx11 forwardx11timeout forwardx11trusted gatewayports globalknownhostsfile
    gssapiauthentication gssapiclientidentity gssapidelegatecredentials gssapikexalgorithms
    gssapikeyexchange gssapirenewalforcesrekey gssapiserveridentity gssapitrustdns
    hashknownhosts host hostbasedacceptedalgorithms hostbasedauthentication
    hostkeyalgorithms hostkeyalias hostname identitiesonly identityagent identityfile
    ignoreunknown include ipqos kbdinteractiveauthentication kbdinteractivedevices
    kexalgorithms knownhostscommand localcommand localforward loglevel logverbose macs match
    nohostauthenticationforlocalhost numberofpasswordprompts passwordauthentication
    permitlocalcommand permitremoteopen pkcs11provider port preferredauthentications
    proxycommand proxyjump proxyusefdpass pubkeyacceptedalgorithms pubkeyauthentication
    rekeylimit remotecommand remoteforward requesttty requiredrsasize revokedhostkeys
    securitykeyprovider sendenv serveralivecountmax serveraliveinterval sessiontype setenv
    setuptimeout stdinnull streamlocalbindmask streamlocalbindunlink stricthostkeychecking
    syslogfacility tcpkeepalive tunnel tunneldevice updatehostkeys user userknownhostsfile
    verifyhostkeydns visualhostkey xauthlocation
    """
)
_ALIASES: Final = MappingProxyType(
    {
        "identityfile2": "identityfile",
        "keepalive": "tcpkeepalive",
        "pubkeyacceptedkeytypes": "pubkeyacceptedalgorithms",
        "hostbasedkeytypes": "hostbasedacceptedalgorithms",
        "challengeresponseauthentication": "kbdinteractiveauthentication",
        "skeyauthentication": "kbdinteractiveauthentication",
        "tisauthentication": "kbdinteractiveauthentication",
        "dsaauthentication": "pubkeyauthentication",
        "smartcarddevice": "pkcs11provider",
    }
)
# Deprecated or unsupported keywords: ssh warns at most and goes on.
_IGNORED_KEYWORDS: Final = _words(
    """
    afstokenpassing cipher compressionlevel fallbacktorsh globalknownhostsfile2
    kerberosauthentication kerberostgtpassing protocol rhostsauthentication
    rhostsrsaauthentication rsaauthentication useblacklistedkeys useprivilegedport useroaming
    usersh userknownhostsfile2
    """
)
# Keys whose every line adds values instead of the first line winning.
_ACCUMULATE: Final = frozenset(
    {"identityfile", "certificatefile", "localforward", "remoteforward", "dynamicforward",
     "sendenv"}
)  # fmt: skip
# Accumulating keys whose repeats ssh drops (add_identity_file, add_certificate_file): a file
# named again, by another matching block or by the second pass, is listed once.
_ACCUMULATE_ONCE: Final = frozenset({"identityfile", "certificatefile"})
# Keys whose argument is the rest of the line, unsplit and unquoted (ssh's parse_command).
_COMMAND_KEYS: Final = frozenset(
    {"proxycommand", "localcommand", "remotecommand", "knownhostscommand"}
)
_FLAG_KEYS: Final = frozenset(
    {"identitiesonly", "compression", "passwordauthentication", "batchmode"}
)
_TIME_KEYS: Final = frozenset({"connecttimeout", "serveraliveinterval"})
_SINGLE_ARG_KEYS: Final = frozenset(
    {"hostname", "user", "port", "identityfile", "certificatefile", "hostkeyalias",
     "connecttimeout", "serveraliveinterval", "serveralivecountmax", "stricthostkeychecking",
     "addressfamily", "preferredauthentications", "forwardagent", "canonicalizehostname"}
    | _FLAG_KEYS
)  # fmt: skip
_LIST_KEYS: Final = frozenset({"userknownhostsfile", "globalknownhostsfile"})
_STRICT_VALUES: Final = MappingProxyType(
    {"yes": "yes", "true": "yes", "no": "no", "false": "no", "off": "no", "ask": "ask",
     "accept-new": "accept-new"}
)  # fmt: skip
_CANONICALIZE_VALUES: Final = MappingProxyType(
    {"yes": "yes", "true": "yes", "no": "no", "false": "no", "always": "always"}
)
_TIME_UNITS: Final = MappingProxyType({"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800})
_TIME_PART: Final = re.compile(r"(\d+)([smhdw]?)", re.IGNORECASE)
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATCH_CRITERIA: Final = frozenset(
    {"all", "canonical", "final", "exec", "host", "originalhost", "user", "localuser"}
)
_NONE: Final = "none"
# ssh refuses these in the host given on the command line (valid_hostname in ssh.c).
_BAD_HOST_CHARS: Final = re.compile(r"[\s'`\"$\\;&<>|(){},\x00-\x1f\x7f]")


# --------------------------------------------------------------------------- public values


@dataclass(frozen=True, slots=True)
class JumpHost:
    """One hop of a ``ProxyJump`` chain: ``[user@]host[:port]`` (``None`` = not given)."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user is not None else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{user}{host}{port}"


@dataclass(frozen=True, slots=True)
class SSHHostConfig:
    """The resolved client configuration for one host, as ``ssh -G`` would report it.

    Paths in ``identity_files``, ``certificate_files`` and ``user_known_hosts_files`` are
    expanded (``~``, ``${ENV}``, ``%`` tokens) the way ssh expands them before use;
    ``IdentityFile none`` entries are dropped. ``options`` holds the raw arguments of every
    key the config set (lowercase keyword -> arguments, defaults not included) and
    ``sources`` where each came from (``"FILE:LINE"``, ``"command line"`` or ``"default"``).
    """

    host: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    identities_only: bool
    certificate_files: tuple[str, ...]
    proxy_jump: tuple[JumpHost, ...]
    proxy_command: str | None
    connect_timeout: int | None
    server_alive_interval: int
    server_alive_count_max: int
    strict_host_key_checking: str
    user_known_hosts_files: tuple[str, ...]
    global_known_hosts_files: tuple[str, ...]
    host_key_alias: str | None
    compression: bool
    address_family: str
    preferred_authentications: tuple[str, ...]
    password_authentication: bool
    batch_mode: bool
    forward_agent: str
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)


def parse_proxy_jump(spec: str, *, where: str = "ProxyJump") -> tuple[JumpHost, ...]:
    """Parse a ``ProxyJump`` value (``[user@]host[:port]`` or ``ssh://`` URIs, comma-separated).

    Returns the hops in connection order; ``none`` gives ``()``.
    Raises :class:`InventoryError` naming ``where`` when a hop cannot be parsed.
    """
    if spec.lower() == _NONE:
        return ()
    hops = []
    for part in spec.split(","):
        hop = _parse_hop(part)
        if hop is None:
            raise InventoryError(
                f"{where}: Invalid ProxyJump {spec!r}; write it as [user@]host[:port],..."
            )
        hops.append(hop)
    return tuple(hops)


# --------------------------------------------------------------------------- parsed form


@dataclass(frozen=True, slots=True)
class _Pattern:
    negated: bool
    regex: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class _Option:
    where: str
    key: str
    args: tuple[str, ...]
    value: object


@dataclass(frozen=True, slots=True)
class _Host:
    where: str
    patterns: tuple[_Pattern, ...]


@dataclass(frozen=True, slots=True)
class _Criterion:
    kind: str
    negated: bool
    patterns: tuple[_Pattern, ...] = ()
    command: str = ""


@dataclass(frozen=True, slots=True)
class _Match:
    where: str
    criteria: tuple[_Criterion, ...]


@dataclass(frozen=True, slots=True)
class _Unknown:
    where: str
    keyword: str


@dataclass(slots=True)
class _Include:
    where: str
    files: list[list[_Statement]]


_Statement = _Option | _Host | _Match | _Include | _Unknown


# --------------------------------------------------------------------------- the resolver


class SSHConfig:
    """Parsed ssh_config files, resolved per host with :meth:`resolve`.

    Build it with :meth:`from_file`, :meth:`from_default` or :meth:`empty`. ``home`` and
    ``local_user`` default to the passwd entry of the current user (what ssh uses for ``~``,
    ``%d``, ``%u`` and ``Match localuser``); ``env`` (default ``os.environ``) serves ``${VAR}``
    and ``$HOME`` for ``Include ~/...``.
    """

    def __init__(
        self,
        statements: list[_Statement],
        *,
        home: str,
        local_user: str,
        uid: int,
        env: Mapping[str, str],
        allow_exec: bool,
    ) -> None:
        self._statements = statements
        self._home = home
        self._local_user = local_user
        self._uid = uid
        self._env = dict(env)
        self._allow_exec = allow_exec
        self._thishost = socket.gethostname()
        self._cache: dict[tuple[str, str | None, int | None], SSHHostConfig] = {}

    # ----------------------------------------------------------------- constructors

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str] | None,
        *,
        system_path: str | os.PathLike[str] | None = SYSTEM_CONFIG_PATH,
        missing_ok: bool = False,
        home: str | None = None,
        local_user: str | None = None,
        env: Mapping[str, str] | None = None,
        allow_exec: bool = False,
    ) -> SSHConfig:
        """Parse the user config ``path`` then the system config ``system_path`` (ssh's order).

        ``path=None`` reads only the system config; ``system_path=None`` skips it (as
        ``ssh -F`` does). A missing system config is ignored; a missing ``path`` raises
        :class:`InventoryError` unless ``missing_ok``. Raises :class:`InventoryError` naming
        ``FILE:LINE`` for a line ssh would refuse, and for ``Match exec`` unless ``allow_exec``.
        """
        pw_home, pw_user, uid = _passwd()
        home = pw_home if home is None else home
        env = os.environ if env is None else env
        loader = _Loader(include_home=env.get("HOME") or home, allow_exec=allow_exec, home=home)
        statements: list[_Statement] = []
        if path is not None:
            user_path = Path(path).expanduser()
            if user_path.exists() or not missing_ok:
                statements.extend(loader.load_top(str(user_path), user_conf=True))
        if system_path is not None and Path(system_path).exists():
            statements.extend(loader.load_top(str(system_path), user_conf=False))
        return cls(
            statements,
            home=home,
            local_user=pw_user if local_user is None else local_user,
            uid=uid,
            env=env,
            allow_exec=allow_exec,
        )

    @classmethod
    def from_default(
        cls,
        *,
        home: str | None = None,
        local_user: str | None = None,
        env: Mapping[str, str] | None = None,
        allow_exec: bool = False,
    ) -> SSHConfig:
        """Read ``~/.ssh/config`` (if present) then the system config, as a plain ``ssh`` does.

        Raises like :meth:`from_file`.
        """
        base = _passwd()[0] if home is None else home
        return cls.from_file(
            Path(base) / ".ssh" / "config",
            missing_ok=True,
            home=home,
            local_user=local_user,
            env=env,
            allow_exec=allow_exec,
        )

    @classmethod
    def empty(cls, *, home: str | None = None, local_user: str | None = None) -> SSHConfig:
        """A config with no files: every host resolves to ssh's defaults."""
        pw_home, pw_user, uid = _passwd()
        return cls(
            [],
            home=pw_home if home is None else home,
            local_user=pw_user if local_user is None else local_user,
            uid=uid,
            env=os.environ,
            allow_exec=False,
        )

    # ----------------------------------------------------------------- resolution

    def resolve(
        self, host: str, *, user: str | None = None, port: int | None = None
    ) -> SSHHostConfig:
        """Resolve ``host`` as ``ssh -G [-l USER] [-p PORT] HOST`` would.

        ``user`` and ``port`` are command-line overrides: they beat the config and ``user``
        is what ``Match user`` sees. Raises :class:`UsageError` for an empty host or a port
        outside 1-65535, :class:`InventoryError` for a config error met while resolving.
        """
        key = (host, user, port)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if not host or host.startswith("-") or _BAD_HOST_CHARS.search(host):
            raise UsageError(
                f"ssh_config: host name {host!r} contains invalid characters (as ssh says); "
                "fix the inventory entry"
            )
        if port is not None and not 1 <= port <= 65535:
            raise UsageError(f"ssh_config: bad port {port} for {host}; use 1-65535")
        result = _Resolution(self, host, user, port).run()
        if not self._allow_exec:  # Match exec may answer differently next time
            self._cache[key] = result
        return result


# --------------------------------------------------------------------------- loading


class _Loader:
    """Reads files into statements, following Includes (parsing each file once)."""

    def __init__(self, *, include_home: str, home: str, allow_exec: bool) -> None:
        self.include_home = include_home
        self.home = home
        self.allow_exec = allow_exec
        self.cache: dict[tuple[str, bool], list[_Statement]] = {}
        self.stack: list[str] = []
        self.has_ignore_unknown = False

    def load_top(self, path: str, *, user_conf: bool) -> list[_Statement]:
        try:
            return self.load(path, user_conf=user_conf, where=path, depth=0)
        except FileNotFoundError as exc:
            raise InventoryError(
                f"{path}: Can't open ssh config file: {exc.strerror}; "
                "check the --ssh-config path or pass --no-ssh-config"
            ) from exc

    def load(self, path: str, *, user_conf: bool, where: str, depth: int) -> list[_Statement]:
        cached = self.cache.get((path, user_conf))
        if cached is not None:
            return cached
        if depth > _MAX_INCLUDE_DEPTH or path in self.stack:
            raise InventoryError(
                f"{where}: Too many recursive configuration includes ({path}); "
                "break the Include loop"
            )
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except IsADirectoryError as exc:
            raise InventoryError(
                f"{where}: Can't open ssh config file {path}: is a directory; "
                "fix the Include pattern"
            ) from exc
        except PermissionError as exc:
            raise InventoryError(
                f"{where}: Can't open ssh config file {path}: permission denied; "
                "fix its permissions"
            ) from exc
        self.stack.append(path)
        try:
            statements = self._parse(path, text, user_conf=user_conf, depth=depth)
        finally:
            self.stack.pop()
        self.cache[(path, user_conf)] = statements
        logger.debug("ssh_config %s: %d statements", path, len(statements))
        return statements

    def _parse(self, path: str, text: str, *, user_conf: bool, depth: int) -> list[_Statement]:
        statements: list[_Statement] = []
        for lineno, raw_line in enumerate(text.splitlines(), start=1):
            where = f"{path}:{lineno}"
            statement = self._parse_line(raw_line, where, user_conf=user_conf, depth=depth)
            if statement is not None:
                statements.append(statement)
        return statements

    def _parse_line(
        self, line: str, where: str, *, user_conf: bool, depth: int
    ) -> _Statement | None:
        line = line.rstrip(_WHITESPACE + "\f")
        keyword, rest = _split_keyword(line)
        if not keyword or keyword.startswith("#"):
            return None
        keyword = keyword.lower()
        if not rest:
            raise _error(where, f'no argument after keyword "{keyword}"')
        keyword = _ALIASES.get(keyword, keyword)
        args = _split_args(rest, where)
        if keyword == "host":
            return _Host(where, _parse_host_patterns(args, where))
        if keyword == "match":
            return _Match(where, self._parse_match(args, where))
        if keyword == "include":
            return self._parse_include(args, where, user_conf=user_conf, depth=depth)
        if keyword in _IGNORED_KEYWORDS:
            logger.debug("%s: ignoring deprecated/unsupported keyword %s", where, keyword)
            return None
        if keyword not in _KNOWN_KEYWORDS:
            if not self.has_ignore_unknown:
                raise _error(where, f"Bad configuration option: {keyword}")
            return _Unknown(where, keyword)
        if keyword == "ignoreunknown":
            self.has_ignore_unknown = True
        if keyword in _COMMAND_KEYS:
            command = rest.lstrip(_WHITESPACE + "=")
            return _Option(where, keyword, (command,), command)
        if keyword in _SINGLE_ARG_KEYS and len(args) > 1:
            raise _error(where, f"keyword {keyword} extra arguments at end of line")
        if not args:
            raise _error(where, f"keyword {keyword} missing argument")
        if keyword == "proxyjump":
            # ssh parses the first word only; the rest of the line is ignored.
            args = args[:1]
        return _Option(where, keyword, args, _parse_value(keyword, args, where))

    def _parse_match(self, args: tuple[str, ...], where: str) -> tuple[_Criterion, ...]:
        criteria: list[_Criterion] = []
        i = 0
        while i < len(args):
            attrib = args[i]
            i += 1
            if attrib.startswith("#"):
                break
            negated = attrib.startswith("!")
            name = (attrib[1:] if negated else attrib).lower()
            if name not in _MATCH_CRITERIA:
                raise _error(where, f"Unsupported Match attribute {attrib}; remove it")
            if name == "all":
                trailing = i < len(args) and not args[i].startswith("#")
                if len(criteria) > 1 or trailing:
                    raise _error(where, "'all' cannot be combined with other Match attributes")
                criteria.append(_Criterion("all", negated))
                break
            if name in ("canonical", "final"):
                criteria.append(_Criterion(name, negated))
                continue
            if i >= len(args) or not args[i] or args[i].startswith("#"):
                raise _error(where, f"Missing Match criteria for {attrib}")
            value = args[i]
            i += 1
            if name == "exec":
                if not self.allow_exec:
                    raise _error(
                        where,
                        f"Match exec {value!r} is not supported (it runs a command per host); "
                        "remove it or use another ssh config",
                    )
                criteria.append(_Criterion("exec", negated, command=value))
                continue
            lower = name in ("host", "originalhost")
            criteria.append(_Criterion(name, negated, _compile_list(value, lower=lower)))
        if not criteria:
            raise _error(where, "Missing Match criteria")
        return tuple(criteria)

    def _parse_include(
        self, args: tuple[str, ...], where: str, *, user_conf: bool, depth: int
    ) -> _Include:
        files: list[list[_Statement]] = []
        for arg in args:
            if arg.startswith("~") and not user_conf:
                raise _error(where, f"bad include path {arg}; use an absolute path")
            if not arg.startswith(("/", "~")):
                arg = ("~/.ssh/" if user_conf else _SYSTEM_SSH_DIR + "/") + arg
            if arg.startswith("~"):
                arg = _tilde(arg, self.include_home, where)
            matches = sorted(glob.glob(arg))
            if not matches:
                logger.debug("%s: include %s matched no files", where, arg)
            for match in matches:
                try:
                    files.append(
                        self.load(match, user_conf=user_conf, where=where, depth=depth + 1)
                    )
                except FileNotFoundError:  # a dangling symlink: ssh skips it too
                    logger.debug("%s: include %s vanished", where, match)
        return _Include(where, files)


# --------------------------------------------------------------------------- resolving


class _Resolution:
    """The mutable state of one ``resolve`` call (ssh's ``Options`` during parsing)."""

    def __init__(self, config: SSHConfig, host: str, user: str | None, port: int | None) -> None:
        self.config = config
        self.host_arg = host
        self.values: dict[str, object] = {}
        self.raw: dict[str, list[str]] = {}
        self.sources: dict[str, str] = {}
        self.final_pass = False
        self.want_final = False
        self.match_host_cache: str | None = None
        self.host_for_host_lines = host
        self.proxy_command_set = False
        if user is not None:
            self.values["user"] = user
            self.raw["user"] = [user]
            self.sources["user"] = "command line"
        if port is not None:
            self.values["port"] = port
            self.raw["port"] = [str(port)]
            self.sources["port"] = "command line"

    def run(self) -> SSHHostConfig:
        config = self.config
        self._walk(config._statements, active=True, never=False)
        hostname_template = self.values.get("hostname")
        if isinstance(hostname_template, str):
            hostname = _expand_hostname(hostname_template, self.host_arg, self.sources["hostname"])
        else:
            hostname = self.host_arg
        hostname = hostname.lower()
        if self.want_final or self.values.get("canonicalizehostname", "no") != "no":
            # ssh re-reads the files once more, matching Host lines against the new name.
            self.final_pass = True
            self.values["hostname"] = hostname
            self.match_host_cache = hostname
            self.host_for_host_lines = hostname
            self._walk(config._statements, active=True, never=False)
        return self._build(hostname)

    # ----------------------------------------------------------------- walking

    def _walk(self, statements: list[_Statement], *, active: bool, never: bool) -> None:
        for st in statements:
            if isinstance(st, _Option):
                if active:
                    self._apply(st)
            elif isinstance(st, _Host):
                active = not never and self._match_host_line(st)
            elif isinstance(st, _Match):
                matched = self._match(st)
                active = not never and matched
            elif isinstance(st, _Include):
                for statements_of_file in st.files:
                    self._walk(statements_of_file, active=active, never=never or not active)
            else:
                self._check_unknown(st)

    def _match_host_line(self, st: _Host) -> bool:
        host = self.host_for_host_lines
        matched = False
        for pattern in st.patterns:
            if pattern.regex.fullmatch(host):
                if pattern.negated:
                    return False
                matched = True
        return matched

    def _match_host(self, where: str) -> str:
        if self.match_host_cache is None:
            template = self.values.get("hostname")
            if isinstance(template, str):
                self.match_host_cache = _expand_hostname(template, self.host_arg, where)
            else:
                self.match_host_cache = self.host_arg
        return self.match_host_cache

    def _match(self, st: _Match) -> bool:
        result = True
        for crit in st.criteria:
            kind = crit.kind
            if kind == "all":
                return result and not crit.negated
            if kind in ("canonical", "final"):
                if kind == "final" and not crit.negated:
                    self.want_final = True
                matched = self.final_pass
            elif kind == "host":
                matched = _match_list(self._match_host(st.where).lower(), crit.patterns)
            elif kind == "originalhost":
                matched = _match_list(self.host_arg.lower(), crit.patterns)
            elif kind == "user":
                matched = _match_list(self._current_user(), crit.patterns)
            elif kind == "localuser":
                matched = _match_list(self.config._local_user, crit.patterns)
            else:  # exec, only reachable with allow_exec
                if not result:
                    continue
                matched = self._run_exec(crit.command, st.where)
            if matched == crit.negated:
                result = False
        return result

    def _current_user(self) -> str:
        user = self.values.get("user")
        return user if isinstance(user, str) else self.config._local_user

    def _run_exec(self, command: str, where: str) -> bool:
        host = self._match_host(where)
        port = self.values.get("port", 22)
        alias = self.values.get("hostkeyalias")
        tokens = self._tokens(
            hostname=host,
            port=port if isinstance(port, int) else 22,
            user=self._current_user(),
            alias=alias if isinstance(alias, str) else None,
        )
        expanded = _percent_expand(command, tokens, None, where)
        logger.debug("%s: running Match exec %r", where, expanded)
        completed = subprocess.run(
            ["/bin/sh", "-c", expanded],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            check=False,
        )
        return completed.returncode == 0

    def _check_unknown(self, st: _Unknown) -> None:
        patterns = self.values.get("ignoreunknown")
        if isinstance(patterns, tuple) and _match_list(st.keyword, patterns):
            return
        raise _error(st.where, f"Bad configuration option: {st.keyword}")

    # ----------------------------------------------------------------- applying

    def _apply(self, st: _Option) -> None:
        key = st.key
        if key in _ACCUMULATE:
            values = self.raw.setdefault(key, [])
            if key in _ACCUMULATE_ONCE:
                new = [arg for arg in st.args if arg not in values]
                if not new:
                    return
                values.extend(new)
            else:
                values.extend(st.args)
            previous = self.sources.get(key)
            self.sources[key] = st.where if previous is None else f"{previous}, {st.where}"
            return
        if key == "proxyjump":
            # A ProxyJump is ignored once ProxyCommand or ProxyJump is set; a real one
            # also locks ProxyCommand (ssh sets it to "none").
            if self.proxy_command_set or "proxyjump" in self.values:
                return
            if st.value != ():
                self.proxy_command_set = True
        elif key == "proxycommand":
            if self.proxy_command_set:
                return
            self.proxy_command_set = True
        elif key in self.values or st.value is None:
            # First value wins; "ConnectTimeout none" and friends do not lock the key.
            return
        self.values[key] = st.value
        if key == "hostname":
            self.match_host_cache = None
        self.raw[key] = list(st.args)
        self.sources[key] = st.where

    # ----------------------------------------------------------------- building

    def _tokens(self, *, hostname: str, port: int, user: str, alias: str | None) -> dict[str, str]:
        config = self.config
        conn_hash = hashlib.sha1(  # noqa: S324 - ssh's %C is a SHA-1, not used for security
            f"{config._thishost}{hostname}{port}{user}".encode()
        ).hexdigest()
        return {
            "C": conn_hash,
            "L": config._thishost.split(".", 1)[0],
            "i": str(config._uid),
            "k": alias if alias is not None else self.host_arg,
            "l": config._thishost,
            "n": self.host_arg,
            "p": str(port),
            "d": config._home,
            "h": hostname,
            "r": user,
            "u": config._local_user,
        }

    def _build(self, hostname: str) -> SSHHostConfig:
        config = self.config
        values = self.values
        sources = dict(self.sources)

        def get(key: str, default: object) -> object:
            if key in values:
                return values[key]
            sources.setdefault(key, "default")
            return default

        port = get("port", 22)
        user = get("user", config._local_user)
        alias = get("hostkeyalias", None)
        assert isinstance(port, int)
        assert isinstance(user, str)
        assert alias is None or isinstance(alias, str)
        alias = alias.lower() if alias is not None else None
        tokens = self._tokens(hostname=hostname, port=port, user=user, alias=alias)

        def expand(paths: Iterable[str], key: str) -> tuple[str, ...]:
            where = sources.get(key, "default")
            return tuple(
                _percent_expand(_tilde(p, config._home, where), tokens, config._env, where)
                for p in paths
                if p.lower() != _NONE or key == "userknownhostsfile"
            )

        identity_raw = self.raw.get("identityfile")
        if identity_raw is None:
            sources["identityfile"] = "default"
        jump = get("proxyjump", ())
        assert isinstance(jump, tuple)
        proxy_command = values.get("proxycommand")
        if jump or proxy_command == _NONE:
            proxy_command = None
        known = get("userknownhostsfile", DEFAULT_USER_KNOWN_HOSTS)
        global_known = get("globalknownhostsfile", DEFAULT_GLOBAL_KNOWN_HOSTS)
        preferred = get("preferredauthentications", "")
        assert isinstance(known, tuple)
        assert isinstance(global_known, tuple)
        assert isinstance(preferred, str)
        return SSHHostConfig(
            host=self.host_arg,
            hostname=hostname,
            port=port,
            user=user,
            # Two spellings of one file ("~/.ssh/k", "%d/.ssh/k") are tried once.
            identity_files=tuple(
                dict.fromkeys(expand(identity_raw or DEFAULT_IDENTITY_FILES, "identityfile"))
            ),
            identities_only=bool(get("identitiesonly", False)),
            certificate_files=tuple(
                dict.fromkeys(expand(self.raw.get("certificatefile", ()), "certificatefile"))
            ),
            proxy_jump=jump,
            proxy_command=proxy_command if isinstance(proxy_command, str) else None,
            connect_timeout=_int_or_none(get("connecttimeout", None)),
            server_alive_interval=_int_or_none(get("serveraliveinterval", 0)) or 0,
            server_alive_count_max=_int_or_none(get("serveralivecountmax", 3)) or 0,
            strict_host_key_checking=str(get("stricthostkeychecking", "ask")),
            user_known_hosts_files=expand(known, "userknownhostsfile"),
            global_known_hosts_files=global_known,
            host_key_alias=alias,
            compression=bool(get("compression", False)),
            address_family=str(get("addressfamily", "any")),
            preferred_authentications=tuple(a for a in preferred.split(",") if a),
            password_authentication=bool(get("passwordauthentication", True)),
            batch_mode=bool(get("batchmode", False)),
            forward_agent=str(get("forwardagent", "no")),
            options={k: tuple(v) for k, v in self.raw.items()},
            sources=sources,
        )


# --------------------------------------------------------------------------- helpers


def _passwd() -> tuple[str, str, int]:
    uid = os.getuid()
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:  # a container user without a passwd entry
        return os.path.expanduser("~"), os.environ.get("USER", str(uid)), uid
    return entry.pw_dir, entry.pw_name, uid


def _error(where: str, message: str) -> InventoryError:
    return InventoryError(f"{where}: {message}")


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _split_keyword(line: str) -> tuple[str, str]:
    """ssh's ``strdelim``: the keyword ends at whitespace or one ``=``."""
    stripped = line.lstrip(_WHITESPACE)
    if not stripped:
        return "", ""
    if stripped[0] == '"':
        end = stripped.find('"', 1)
        if end < 0:
            return "", ""
        return stripped[1:end], stripped[end + 1 :].lstrip(_WHITESPACE)
    match = re.match(r'[^ \t\r\n="]*', stripped)
    assert match is not None
    keyword = match.group(0)
    rest = stripped[len(keyword) :].lstrip(_WHITESPACE)
    if rest.startswith("="):
        rest = rest[1:].lstrip(_WHITESPACE)
    return keyword, rest


def _split_args(text: str, where: str) -> tuple[str, ...]:
    """ssh's ``argv_split``: quotes, backslash escapes, ``#`` comments at a word start."""
    args: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            i += 1
            continue
        if c == "#":
            break
        quote = ""
        word: list[str] = []
        while i < n:
            c = text[i]
            if (
                c == "\\"
                and i + 1 < n
                and (text[i + 1] in "'\"\\" or (not quote and text[i + 1] == " "))
            ):
                word.append(text[i + 1])
                i += 2
                continue
            if not quote and c in " \t":
                break
            if not quote and c in "\"'":
                quote = c
            elif quote and c == quote:
                quote = ""
            else:
                word.append(c)
            i += 1
        if quote:
            raise _error(where, "invalid quotes; close the quoted argument")
        args.append("".join(word))
    return tuple(args)


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    """ssh's ``match_pattern``: ``*`` and ``?`` only, whole string."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _parse_host_patterns(args: tuple[str, ...], where: str) -> tuple[_Pattern, ...]:
    patterns = []
    for arg in args:
        if not arg:
            raise _error(where, "keyword host empty argument")
        negated = arg.startswith("!")
        patterns.append(_Pattern(negated, _compile_pattern(arg[1:] if negated else arg)))
    return tuple(patterns)


def _compile_list(value: str, *, lower: bool) -> tuple[_Pattern, ...]:
    """ssh's ``match_pattern_list``: comma-separated, ``!`` negates one entry."""
    if lower:
        value = value.lower()
    patterns = []
    for item in value.split(","):
        negated = item.startswith("!")
        patterns.append(_Pattern(negated, _compile_pattern(item[1:] if negated else item)))
    return tuple(patterns)


def _match_list(value: str, patterns: tuple[_Pattern, ...]) -> bool:
    """True when some positive entry matches and no negated one does."""
    positive = False
    for pattern in patterns:
        if pattern.regex.fullmatch(value):
            if pattern.negated:
                return False
            positive = True
    return positive


def _parse_port(text: str, where: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _error(where, f"Bad port '{text}'; use a number from 1 to 65535")
    return int(text)


def _parse_time(text: str, where: str) -> int | None:
    """ssh's ``convtime``: ``90``, ``1h30m``, ``2W``; ``none`` gives None."""
    if text == _NONE:
        return None
    if not text or _TIME_PART.sub("", text):
        raise _error(where, f"invalid time value {text!r}; write e.g. 30, 5m or 1h30m")
    return sum(int(n) * _TIME_UNITS[u.lower()] for n, u in _TIME_PART.findall(text))


def _parse_flag(text: str, where: str) -> bool:
    lowered = text.lower()
    if lowered in ("yes", "true"):
        return True
    if lowered in ("no", "false"):
        return False
    raise _error(where, f'unsupported option "{text}"; use yes or no')


def _parse_value(key: str, args: tuple[str, ...], where: str) -> object:
    """Check a value the way ssh does (even in blocks that do not match) and convert it."""
    first = args[0]
    if key == "port":
        return _parse_port(first, where)
    if key in _TIME_KEYS:
        return _parse_time(first, where)
    if key == "serveralivecountmax":
        if not re.fullmatch(r"-?\d+", first) or int(first) < 0:
            raise _error(where, f"integer value {first!r} invalid; use a count >= 0")
        return int(first)
    if key in _FLAG_KEYS:
        return _parse_flag(first, where)
    if key == "stricthostkeychecking":
        return _choice(first, _STRICT_VALUES, where)
    if key == "canonicalizehostname":
        return _choice(first, _CANONICALIZE_VALUES, where)
    if key == "addressfamily":
        return _choice(first, {"any": "any", "inet": "inet", "inet6": "inet6"}, where)
    if key == "forwardagent":
        lowered = first.lower()
        return {"yes": "yes", "true": "yes", "no": "no", "false": "no"}.get(lowered, first)
    if key == "proxyjump":
        return parse_proxy_jump(first, where=where)
    if key in _LIST_KEYS:
        if any(a.lower() == _NONE for a in args) and len(args) > 1:
            raise _error(where, f'keyword {key} "none" argument must appear alone')
        return args
    if key == "ignoreunknown":
        return _compile_list(first, lower=True)
    return first if key in _SINGLE_ARG_KEYS else args


def _choice(text: str, choices: Mapping[str, str], where: str) -> str:
    try:
        return choices[text.lower()]
    except KeyError:
        allowed = ", ".join(sorted(set(choices)))
        raise _error(where, f'unsupported option "{text}"; use one of {allowed}') from None


def _parse_hop(text: str) -> JumpHost | None:
    """ssh's ``parse_ssh_uri`` then ``parse_user_host_port`` for one ProxyJump hop."""
    user: str | None = None
    if text[:6].lower() == "ssh://":
        rest = text[6:]
        if rest.endswith("/"):
            rest = rest[:-1]
        if "/" in rest:
            return None
        if "@" in rest:
            user, _, rest = rest.rpartition("@")
            if not user:
                return None
    else:
        rest = text
        if "@" in rest:
            user, _, rest = rest.rpartition("@")
            if not user:
                return None
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            return None
        host, tail = rest[1:end], rest[end + 1 :]
        if tail and tail[0] not in ":/":
            return None
        port_text = tail[1:] if tail else ""
    else:
        delim = re.search(r"[:/]", rest)
        if delim is None:
            host, port_text = rest, ""
        else:
            host, port_text = rest[: delim.start()], rest[delim.end() :]
    if not host:
        return None
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            return None
        port = int(port_text)
    return JumpHost(host=host, user=user, port=port)


def _tilde(path: str, home: str, where: str) -> str:
    """ssh's ``tilde_expand_filename``: ``~`` and ``~/x`` use ``home``, ``~user`` that user's."""
    if not path.startswith("~"):
        return path
    name, sep, tail = path[1:].partition("/")
    if name:
        try:
            base = pwd.getpwnam(name).pw_dir
        except KeyError:
            raise _error(where, f"tilde expansion of {path!r}: no such user {name!r}") from None
    else:
        base = home
    return base.rstrip("/") + "/" + tail if sep else base


def _percent_expand(
    text: str, tokens: Mapping[str, str], env: Mapping[str, str] | None, where: str
) -> str:
    """ssh's ``percent_dollar_expand``: ``%x`` tokens and (when ``env``) ``${VAR}``."""
    if "%" not in text and "$" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "$" and env is not None and text.startswith("${", i):
            end = text.find("}", i + 2)
            name = text[i + 2 : end] if end >= 0 else ""
            if end < 0 or not _ENV_NAME.fullmatch(name):
                raise _error(where, f"invalid environment variable in {text!r}")
            if name not in env:
                raise _error(where, f"env var ${{{name}}} has no value; set it or edit the line")
            out.append(env[name])
            i = end + 1
            continue
        if c == "%":
            if i + 1 >= n:
                raise _error(where, f"invalid format {text!r}: '%' at end; write %% for '%'")
            key = text[i + 1]
            if key == "%":
                out.append("%")
            elif key in tokens:
                out.append(tokens[key])
            else:
                raise _error(
                    where, f"unknown token %{key} in {text!r}; see TOKENS in ssh_config(5)"
                )
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _expand_hostname(template: str, host: str, where: str) -> str:
    """``HostName`` knows only ``%h`` and ``%%``."""
    return _percent_expand(template, {"h": host}, None, where)

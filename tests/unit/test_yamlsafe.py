"""One safe YAML loader (remoteops.yamlsafe) for every YAML file remoteops reads.

A hostile document is refused the same way whether it is an inventory, a
playbook, a rules file or an ``--extra-vars @FILE``: the same ``FILE:LINE: ...``
message, as the error of that kind of file (exit 2), and nothing expanded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from remoteops.analysis import load_rules
from remoteops.errors import InventoryError, PlaybookError, RemoteOpsError, UsageError
from remoteops.exitcodes import ExitCode
from remoteops.inventory import load_inventory
from remoteops.playbook import load_playbook
from remoteops.playbook.variables import parse_extra_vars
from remoteops.yamlsafe import MAX_ALIASES, MAX_NODES, load_yaml
from tests.readme import ROOT


def _billion_laughs() -> str:
    """Nine levels of nine aliases: 72 aliases that expand to 9**9 nodes."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


HOSTILE: Final = {
    "billion-laughs": (
        _billion_laughs(),
        rf":\d+: YAML aliases expand to more than {MAX_NODES} nodes; write the values out",
    ),
    "many-aliases": (
        "x: &x 1\ny: [" + ", ".join(["*x"] * (MAX_ALIASES + 1)) + "]\n",
        rf":\d+: more than {MAX_ALIASES} YAML aliases; write the values out",
    ),
    "duplicate-key": (
        "- name: a\n  name: b\n",
        r":2: duplicate key 'name' \(first at line 1\); remove one of them",
    ),
    "python-tag": (
        "- !!python/object/apply:os.system ['touch /tmp/pwned']\n",
        r":1: Python tags are refused: 'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
}

# Each kind of YAML file remoteops reads, and the error it raises.
READERS: Final[dict[str, tuple[Callable[[Path], object], type[RemoteOpsError]]]] = {
    "inventory": (lambda path: load_inventory([path]), InventoryError),
    "playbook": (load_playbook, PlaybookError),
    "rules": (load_rules, UsageError),
    "extra-vars": (lambda path: parse_extra_vars([f"@{path}"]), UsageError),
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_hostile_yaml_is_refused_the_same_way_by_every_reader(
    tmp_path: Path, reader: str, hostile: str
) -> None:
    text, message = HOSTILE[hostile]
    path = tmp_path / "hostile.yml"
    path.write_text(text)
    read, error = READERS[reader]
    with pytest.raises(error) as info:
        read(path)
    assert info.value.exit_code == ExitCode.USAGE
    assert re.fullmatch(re.escape(str(path)) + message + ".*", str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


def test_the_callers_error_class_and_vault_advice() -> None:
    with pytest.raises(PlaybookError, match=r"^p\.yml:1: Ansible Vault encrypted .*; decrypt"):
        load_yaml("$ANSIBLE_VAULT;1.1;AES256\n6162\n", "p.yml", error=PlaybookError)
    with pytest.raises(InventoryError, match=r"^i\.yml:1: Ansible Vault \(!vault\) .*, or ASK"):
        load_yaml("x: !vault |\n  6162\n", "i.yml", error=InventoryError, vault_advice="ASK")
    data = load_yaml("a: 1\nb:\n  c: 2\n", "ok.yml", error=UsageError)
    assert data == {"a": 1, "b": {"c": 2}}
    assert data.lines == {"a": 1, "b": 2}
    assert data["b"].lines == {"c": 3}


def test_no_yaml_is_parsed_outside_the_safe_loader() -> None:
    parsing = re.compile(
        r"\byaml\.(?:safe_load|load|full_load|unsafe_load|compose|parse|\w*Loader)\b|CParser"
    )
    elsewhere = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "remoteops").rglob("*.py"))
        if path.name != "yamlsafe.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if parsing.search(line)
    ]
    assert not elsewhere, "read YAML with remoteops.yamlsafe.load_yaml: " + ", ".join(elsewhere)

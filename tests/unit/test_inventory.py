"""Inventory loading, checked against answers recorded from ansible-core 2.19.

The cases live in tests/data/inventories/<case>/ with case.json (sources, patterns)
and the recorded expected_list.json, expected_graph.txt and expected_patterns.json
(see tests/data/README-ansible.md for how they were made).
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from pathlib import Path

import pytest

from remoteops.errors import InventoryError, UnknownHostError
from remoteops.inventory import (
    ConnectionVars,
    Inventory,
    connection_vars,
    default_inventory_sources,
    load_inventory,
)
from remoteops.yamlsafe import load_yaml

DATA = Path(__file__).resolve().parent.parent / "data" / "inventories"
CASES = sorted(p.parent.name for p in DATA.glob("*/case.json"))


def _load_case(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Inventory, dict]:
    case = DATA / name
    spec = json.loads((case / "case.json").read_text())
    monkeypatch.chdir(case)  # sources are relative to the case, as when recorded
    return load_inventory(spec["sources"]), spec


def test_there_are_enough_recorded_cases() -> None:
    assert len(CASES) >= 8
    patterns = sum(
        len(json.loads((DATA / c / "expected_patterns.json").read_text())) for c in CASES
    )
    assert patterns >= 30


@pytest.mark.parametrize("name", CASES)
def test_list_matches_ansible_inventory(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    inv, _ = _load_case(name, monkeypatch)
    expected = json.loads((DATA / name / "expected_list.json").read_text())
    got = json.loads(json.dumps(inv.to_ansible_list()))
    # compared as JSON text: NaN (yaml_types) is not equal to itself
    assert _text(got["_meta"]["hostvars"]) == _text(expected["_meta"]["hostvars"])
    assert _text({k: v for k, v in got.items() if k != "_meta"}) == _text(
        {k: v for k, v in expected.items() if k != "_meta"}
    )
    assert _text(got) == _text(expected)


def _text(value: object) -> str:
    return json.dumps(value, indent=1, sort_keys=True)


@pytest.mark.parametrize("name", CASES)
def test_graph_matches_ansible_inventory(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    inv, _ = _load_case(name, monkeypatch)
    assert inv.graph() == (DATA / name / "expected_graph.txt").read_text().rstrip("\n")


def _unstable(name: str) -> set[str]:
    """Answers whose host order changed between Ansible runs (recorded sorted)."""
    path = DATA / name / "expected_unstable_order.json"
    return set(json.loads(path.read_text())) if path.exists() else set()


@pytest.mark.parametrize("name", CASES)
def test_patterns_match_ansible(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    inv, _ = _load_case(name, monkeypatch)
    expected = json.loads((DATA / name / "expected_patterns.json").read_text())
    unstable = _unstable(name)
    got = {}
    for pattern in expected:
        hosts = [h.name for h in inv.select(pattern)]
        got[pattern] = sorted(hosts) if pattern in unstable else hosts
    assert got == expected


LIMIT_CASES = sorted(p.parent.name for p in DATA.glob("*/expected_limits.json"))


@pytest.mark.parametrize("name", LIMIT_CASES)
def test_limits_match_ansible(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    inv, _ = _load_case(name, monkeypatch)
    for entry in json.loads((DATA / name / "expected_limits.json").read_text()):
        got = [h.name for h in inv.select(entry["pattern"], limit=entry["limit"])]
        if f"{entry['pattern']} --limit {entry['limit']}" in _unstable(name):
            got.sort()
        assert got == entry["hosts"], entry


def test_host_model_and_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    inv, _ = _load_case("deep_children", monkeypatch)
    par1 = inv.get_host("par1")
    assert par1.groups == (
        "aa_high",
        "capitals",
        "db",
        "europe",
        "france",
        "mm_mid",
        "paris",
        "roles",
        "world",
        "zz_low",
    )
    assert inv.groups_of("par1") == list(par1.groups)
    # priority 10 beats 1 and 0 among the depth-1 groups
    assert inv.host_vars("par1")["prio_var"] == "aa_high"
    assert inv.groups["aa_high"].priority == 10
    assert inv.groups["paris"].depth == 4
    with pytest.raises(UnknownHostError, match="nope"):
        inv.get_host("nope")
    with pytest.raises(KeyError):
        inv.host_vars("nope")
    # host_vars returns a copy
    inv.host_vars("par1")["level"] = "changed"
    assert inv.host_vars("par1")["level"] == "paris"


def test_models_are_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    inv, _ = _load_case("docs_plugin_example", monkeypatch)
    host = inv.get_host("test2")
    with pytest.raises(AttributeError):
        host.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        host.vars["host_var"] = "x"  # type: ignore[index]
    copy = pickle.loads(pickle.dumps(host))
    assert copy == host
    assert dict(copy.vars) == dict(host.vars)
    assert copy.vars["host_var"] == "value"


def test_directory_inventory_skips_ignored_files(monkeypatch: pytest.MonkeyPatch) -> None:
    inv, _ = _load_case("vars_dirs", monkeypatch)
    # hosts.retry, backup.yml~, old.orig and README.md hold no valid inventory
    assert set(inv.hosts) == {
        "web01",
        "web02",
        "web03",
        "db01",
        "db02",
        "mon01",
        "edge01",
        "edge02",
    }
    assert inv.host_vars("web02")["override_me"] == "web02-b"
    assert inv.host_vars("web03")["override_me"] == "web-20"
    assert "hidden" not in inv.host_vars("web03")
    assert inv.host_vars("db01")["db_role"] == "replica-from-file"


# --- sources ---------------------------------------------------------------------------


def test_inline_list_and_host_list(tmp_path: Path) -> None:
    listing = tmp_path / "hosts.txt"
    listing.write_text("# fleet\nadmin@a.example.com:2201\n[2001:db8::5]:2200\nb  # comment\n\n")
    inv = load_inventory([listing, "c,d:2222,a.example.com"])
    assert list(inv.hosts) == ["a.example.com", "2001:db8::5", "b", "c", "d"]
    assert inv.host_vars("a.example.com") == {"ansible_port": 2201, "ansible_user": "admin"}
    assert inv.host_vars("2001:db8::5") == {"ansible_port": 2200}
    assert inv.host_vars("d") == {"ansible_port": 2222}
    assert inv.groups["ungrouped"].hosts == ("a.example.com", "2001:db8::5", "b", "c", "d")


def test_bad_host_list_line_is_named(tmp_path: Path) -> None:
    """Neither a host list nor INI: the error of the reading that got further (the host
    list, to line 3; INI stops at line 2, whose host word has a user)."""
    bad = tmp_path / "hosts.txt"
    bad.write_text("ok1\nroot@ok2\nnot a host\n")
    with pytest.raises(InventoryError) as err:
        load_inventory([bad])
    assert str(err.value) == (
        f"{bad}:3: not [user@]host[:port] (it holds spaces); expected an INI or YAML "
        "inventory, or one [user@]host[:port] per line"
    )


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="not found"):
        load_inventory([tmp_path / "nope.yml"])


def test_default_inventory_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_inventory_sources({}) == ["./inventories/hosts.yml"]
    assert default_inventory_sources({"REMOTEOPS_INVENTORY": "a.yml:b.yml"}) == ["a.yml", "b.yml"]
    monkeypatch.setenv("REMOTEOPS_INVENTORY", "x.yml")
    assert default_inventory_sources() == ["x.yml"]


# --- bad input ---------------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "hosts.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_duplicate_key_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "web:\n  hosts:\n    a:\n    b:\n    a:\n")
    with pytest.raises(InventoryError, match=r"hosts.yml:5: duplicate key 'a' \(first at line 3\)"):
        load_inventory([path])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2024-13-45", r"hosts.yml:4: '2024-13-45' is not a valid date \(month must be in 1..12\)"),
        ("9" * 5000, r"hosts.yml:4: '9{40}\.\.\.' is not a valid integer \(Exceeds the limit"),
    ],
    ids=["impossible date", "integer past the digit limit"],
)
def test_a_value_yaml_cannot_build_is_one_error_naming_file_and_line(
    tmp_path: Path, value: str, message: str
) -> None:
    path = _write(tmp_path, f"all:\n  hosts:\n    a:\n      x: {value}\n")
    with pytest.raises(InventoryError, match=message + r".*; quote it to keep it as text$"):
        load_inventory([path])
    quoted = _write(tmp_path, f"all:\n  hosts:\n    a:\n      x: '{value}'\n", "quoted.yml")
    assert load_inventory([quoted]).hosts["a"].vars["x"] == value


def test_a_child_group_of_ungrouped_keeps_its_hosts(tmp_path: Path) -> None:
    """As ansible-core's reconcile: only a host put in 'ungrouped' itself leaves it when
    it is in another group; one there through a child group of 'ungrouped' stays."""
    path = _write(
        tmp_path,
        "all:\n  children:\n    ungrouped:\n      children:\n        web:\n"
        "          hosts:\n            web01:\n      hosts:\n        lone:\n",
    )
    inv = load_inventory([path])
    assert list(inv.groups["ungrouped"].hosts) == ["lone"]
    assert list(inv.groups["web"].hosts) == ["web01"]
    assert list(inv.groups["ungrouped"].children) == ["web"]


def test_python_tag_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "web:\n  vars:\n    x: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(InventoryError, match=r"hosts.yml:3: Python tags are refused"):
        load_inventory([path])


def test_alias_bomb_is_rejected_fast(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = _write(tmp_path, "\n".join(lines) + "\n")
    start = time.monotonic()
    with pytest.raises(InventoryError, match="aliases"):
        load_inventory([path])
    assert time.monotonic() - start < 2


def test_alias_expansion_budget(tmp_path: Path) -> None:
    # few aliases, but each doubles the size: 2**20 nodes
    lines = ["a0: &a0 [x, x]"]
    for i in range(1, 20):
        lines.append(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]")
    with pytest.raises(InventoryError, match=r"expand to more than"):
        load_yaml("\n".join(lines), "bomb.yml", error=InventoryError)


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "web:\n  vars: &common\n    ntp: n1\n  hosts:\n    w1:\ndb:\n  vars: *common\n"
        "  hosts:\n    d1:\n",
    )
    assert load_inventory([path]).host_vars("d1") == {"ntp": "n1"}


def test_bad_host_names_are_all_listed(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'web:\n  hosts:\n    "..":\n    "a/b":\n    "-oProxyCommand=x":\n    ok1:\n    ".":\n'
        '    "bell\\a":\n',
    )
    with pytest.raises(InventoryError) as err:
        load_inventory([path])
    message = str(err.value)
    for bad in ("'..'", "'a/b'", "'-oProxyCommand=x'", "'.'", "'bell\\x07'"):
        assert bad in message
    assert "ok1" not in message
    assert message.startswith("5 host names cannot be used")


def test_cycle_in_children(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "a:\n  children:\n    b:\n      children:\n        c:\nc:\n  children:\n    a:\n"
    )
    with pytest.raises(InventoryError, match=r"hosts.yml:8: .*cycle in children"):
        load_inventory([path])


def test_group_child_of_itself(tmp_path: Path) -> None:
    path = _write(tmp_path, "a:\n  children:\n    a:\n")
    with pytest.raises(InventoryError, match="lists itself"):
        load_inventory([path])


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("web[5:1]", "ends before it starts"),
        ("web[a:1]", "mixes letters and numbers"),
        ("web[01:100]", "same length"),
        ("web[1:3:0]", "step must be at least 1"),
        ("web[1]", "must be"),
    ],
)
def test_invalid_ranges_name_the_file(tmp_path: Path, key: str, reason: str) -> None:
    path = _write(tmp_path, f'web:\n  hosts:\n    "{key}":\n')
    with pytest.raises(InventoryError, match=rf"hosts.yml:3: .*{reason}"):
        load_inventory([path])


def test_integer_host_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "web:\n  hosts:\n    12:\n")
    with pytest.raises(InventoryError, match="must be a string"):
        load_inventory([path])


def test_plugin_file_is_explained(tmp_path: Path) -> None:
    path = _write(tmp_path, "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n", "aws_ec2.yml")
    with pytest.raises(InventoryError) as err:
        load_inventory([path])
    assert "aws_ec2.yml:1: dynamic inventory plugin 'amazon.aws.aws_ec2'" in str(err.value)
    assert "ansible-inventory -i FILE --list > inv.json" in str(err.value)


def test_vault_value_is_explained(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "web:\n  hosts:\n    w1:\n      ansible_password: !vault |\n"
        "        $ANSIBLE_VAULT;1.1;AES256\n        6162\n",
    )
    with pytest.raises(InventoryError, match=r"hosts.yml:4: Ansible Vault \(!vault\)"):
        load_inventory([path])


def test_vaulted_group_vars_file_is_explained(tmp_path: Path) -> None:
    path = _write(tmp_path, "web:\n  hosts:\n    w1:\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    with pytest.raises(InventoryError, match=r"web.yml:1: Ansible Vault encrypted"):
        load_inventory([path])


def test_jinja_kept_literally_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path, "web:\n  hosts:\n    w1:\n      motd: '{{ greeting }}'\n")
    with caplog.at_level(logging.WARNING, logger="remoteops.inventory"):
        inv = load_inventory([path])
    assert inv.host_vars("w1")["motd"] == "{{ greeting }}"
    assert "hosts.yml:3" in caplog.text
    assert "'motd'" in caplog.text
    assert inv.connection_vars("w1").address is None


def test_jinja_in_connection_variable_raises(tmp_path: Path) -> None:
    path = _write(tmp_path, "web:\n  hosts:\n    w1:\n      ansible_host: '{{ ip }}'\n")
    inv = load_inventory([path])
    with pytest.raises(InventoryError, match=r"host 'w1': ansible_host = .*Jinja2"):
        inv.connection_vars("w1")


def test_jinja_password_is_not_echoed() -> None:
    with pytest.raises(InventoryError) as err:
        connection_vars({"ansible_password": "{{ lookup('env', 'PW') }}"})
    assert "lookup" not in str(err.value)
    assert "(hidden)" in str(err.value)


def test_non_mapping_section(tmp_path: Path) -> None:
    path = _write(tmp_path, "web:\n  hosts:\n    - a\n    - b\n")
    with pytest.raises(InventoryError, match=r"hosts.yml:2: 'hosts' of group 'web' must be"):
        load_inventory([path])


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "web:\n  hosts:\n    a: [\n")
    with pytest.raises(InventoryError, match=r"hosts.yml:\d+: invalid YAML"):
        load_inventory([path])


def test_errors_pickle() -> None:
    err = InventoryError("x.yml:3: duplicate key")
    assert str(pickle.loads(pickle.dumps(err))) == "x.yml:3: duplicate key"


# --- connection variables ----------------------------------------------------------------


def test_connection_vars_legacy_names(monkeypatch: pytest.MonkeyPatch) -> None:
    inv, _ = _load_case("legacy_null", monkeypatch)
    old1 = inv.connection_vars("old1")
    assert (old1.address, old1.port, old1.user, old1.password) == (
        "127.0.0.5",
        2222,
        "admin",
        "s3cret",
    )
    assert old1.private_key_files == ("~/.ssh/legacy",)
    old2 = inv.connection_vars("old2")
    # ansible_ssh_host wins over ansible_host, as in ansible-core
    assert old2.address == "127.0.0.7"
    assert (old2.become, old2.become_user, old2.become_method, old2.become_password) == (
        True,
        "root",
        "sudo",
        "hunter2",
    )
    old3 = inv.connection_vars("old3")
    assert old3.address is None
    assert old3.port is None
    assert old3.become is False


def test_connection_vars_ssh_args(monkeypatch: pytest.MonkeyPatch) -> None:
    inv, _ = _load_case("legacy_null", monkeypatch)
    new1 = inv.connection_vars("new1")
    assert new1.host == "127.0.0.8"
    assert new1.port == 2200
    assert new1.proxy_jump == "bastion@jump.example.com:22"
    assert new1.proxy_command == "ssh -W %h:%p gw"
    assert (new1.become, new1.become_method, new1.become_user) == (True, "su", "postgres")
    assert "pw" not in repr(new1)
    assert "s3cret" not in repr(inv.connection_vars("old1"))


def test_connection_vars_dash_j_and_errors() -> None:
    cv = connection_vars(
        {
            "ansible_ssh_common_args": "-J jump1,jump2 -oStrictHostKeyChecking=no",
            "ansible_ssh_private_key_file": ["k1", "k2"],
        }
    )
    assert cv.proxy_jump == "jump1,jump2"
    assert cv.ssh_options["stricthostkeychecking"] == "no"
    assert cv.private_key_files == ("k1", "k2")
    assert isinstance(cv, ConnectionVars)
    with pytest.raises(InventoryError, match="not a number"):
        connection_vars({"ansible_port": "ssh"})
    with pytest.raises(InventoryError, match="out of range"):
        connection_vars({"ansible_port": 70000})
    with pytest.raises(InventoryError, match="cannot be split"):
        connection_vars({"ansible_ssh_common_args": "-o 'ProxyCommand=unterminated"})


# --- plain host lists (pssh's format) ----------------------------------------------------


def test_one_address_on_two_ports_is_two_hosts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """root@10.0.0.1 and root@10.0.0.1:2205 were one host (the last line's port won)."""
    path = tmp_path / "hosts.txt"
    path.write_text(
        "root@10.0.0.1\nroot@10.0.0.1:2205\n# again:\nroot@10.0.0.1\n"
        "alone:2222\n[2001:db8::1]:22\n[2001:db8::1]:2200\n"
        "admin@10.0.0.9\nroot@10.0.0.9\nroot@10.0.0.9\n"
    )
    with caplog.at_level(logging.WARNING, logger="remoteops.inventory"):
        inv = load_inventory([path])
    assert list(inv.hosts) == [
        "10.0.0.1",
        "10.0.0.1:2205",
        "alone",  # one port only: named by its address, as Ansible does
        "[2001:db8::1]:22",
        "[2001:db8::1]:2200",
        "admin@10.0.0.9",
        "root@10.0.0.9",
    ]
    assert inv.host_vars("10.0.0.1") == {"ansible_user": "root"}
    assert inv.host_vars("10.0.0.1:2205") == {
        "ansible_port": 2205,
        "ansible_host": "10.0.0.1",
        "ansible_user": "root",
    }
    assert inv.host_vars("alone") == {"ansible_port": 2222}
    six = inv.connection_vars("[2001:db8::1]:2200")
    assert (six.address, six.port) == ("2001:db8::1", 2200)
    nine = inv.connection_vars("admin@10.0.0.9")
    assert (nine.address, nine.user) == ("10.0.0.9", "admin")
    # each new name is a pattern that selects its host, alone or in a list
    for name in inv.hosts:
        assert [h.name for h in inv.select(name)] == [name]
    assert [h.name for h in inv.select("10.0.0.1:2205,alone")] == ["10.0.0.1:2205", "alone"]
    # duplicate lines: one warning for the file, naming the lines
    (record,) = caplog.records
    assert record.getMessage() == (
        f"{path}: line 4 repeats line 1 (10.0.0.1), line 10 repeats line 9 (root@10.0.0.9); "
        "each host is used once"
    )


def test_inline_list_with_two_ports_is_two_hosts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="remoteops.inventory"):
        inv = load_inventory(["web1:22,web1:2200,web2,web2"])
    assert list(inv.hosts) == ["web1:22", "web1:2200", "web2"]
    assert inv.connection_vars("web1:2200").address == "web1"
    assert [r.getMessage() for r in caplog.records] == [
        "<inline list>: web2 is listed again; each host is used once"
    ]


# --- values of every YAML type --------------------------------------------------------------


def test_values_ansible_cannot_print_still_print(tmp_path: Path) -> None:
    """ansible-inventory --list fails on !!binary values and date keys; sets come out
    in Python's set order. remoteops prints each one (see README-ansible.md)."""
    path = _write(
        tmp_path,
        "all:\n  hosts:\n    h1:\n      blob: !!binary aGVsbG8=\n"
        "      by_day: {2024-01-01: a, 2024-01-02 03:04:05: b}\n"
        "      tags: !!set {zeta, alpha, mid}\n      mixed: !!set {1, a, 2024-01-01}\n",
    )
    listed = load_inventory([path]).to_ansible_list()
    text = json.dumps(listed, sort_keys=True)  # must not raise
    assert json.loads(text)["_meta"]["hostvars"]["h1"] == {
        "blob": "aGVsbG8=",
        "by_day": {"2024-01-01": "a", "2024-01-02T03:04:05": "b"},
        "tags": ["alpha", "mid", "zeta"],
        "mixed": ["2024-01-01", 1, "a"],
    }


# --- INI inventories ------------------------------------------------------------------------

INI_CASES = (
    "ini_children",
    "ini_dir",
    "ini_etc_hosts",
    "ini_kubespray",
    "ini_terraform",
    "ini_types",
)
INI_ERRORS = DATA / "ini_errors"


def test_ini_cases_are_recorded() -> None:
    """The INI answers of ansible-core are part of the parametrized cases above."""
    assert set(INI_CASES) <= set(CASES)
    for name in INI_CASES:
        sources = json.loads((DATA / name / "case.json").read_text())["sources"]
        assert not any(s.endswith((".yml", ".yaml", ".json")) for s in sources), name


def test_ini_host_line_and_vars_values_are_typed_as_ansible_types_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spot checks of the recorded ini_types answers (the whole list is compared above):
    :vars values go through ast.literal_eval too, whatever Ansible's docs say."""
    inv, _ = _load_case("ini_types", monkeypatch)
    w1 = inv.host_vars("w1")
    assert (w1["nport"], w1["word"], w1["sentence"]) == (
        8080,
        "bar # after a word it is kept",
        "Hello, world!",
    )
    assert (w1["list"], w1["equals"], w1["color"]) == ([1, "two", 3.0], "x=y", "host_wins")
    assert inv.host_vars("w2")["color"] == "green"  # web beats prod: same depth, by name
    bools = inv.host_vars("bools")
    assert (bools["b_true"], bools["b_lower"], bools["b_yes"], bools["b_none"]) == (
        True,
        "true",
        "yes",
        None,
    )
    assert inv.host_vars("strings")["s_pass"] == "03#pa33w0rd"
    assert inv.host_vars("ports")["ansible_port"] == 2299
    assert inv.host_vars("weird") == {
        "eq": "a=b=c",
        "url": "http://example.com/x?a=b",
        "semi": "a;b",
        "hash": "before",
    }


def _error_cases() -> list[tuple[str, int]]:
    return sorted(json.loads((INI_ERRORS / "errors.json").read_text()).items())


@pytest.mark.parametrize(("name", "line"), _error_cases())
def test_ini_errors_name_file_and_line(name: str, line: int) -> None:
    """Each file is one ansible-core refuses (its reason is recorded); remoteops refuses it
    too, in one line that names FILE:LINE and says what to do."""
    refused = json.loads((INI_ERRORS / "expected_errors.json").read_text())
    assert refused[name]
    path = INI_ERRORS / name
    with pytest.raises(InventoryError) as err:
        load_inventory([path])
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert "\n" not in message
    assert err.value.exit_code == 2


def test_ini_error_in_a_directory_stops_the_load(tmp_path: Path) -> None:
    """A file with [sections] is INI: its error is an error, not a skipped file."""
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "a.yml").write_text("web:\n  hosts:\n    w1:\n")
    (inv / "b").write_text("[db]\nd1\n[db:vars]\nport 5432\n")
    with pytest.raises(InventoryError, match=rf"^{inv / 'b'}:4: a line of \[db:vars\] must be"):
        load_inventory([inv])


def test_ini_file_leaves_nothing_behind_when_refused(tmp_path: Path) -> None:
    """A file of an inventory directory that is not INI after all adds no host."""
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts").write_text("web1 role=a\nweb2 role=b\nthis is prose, not hosts\n")
    (inv / "real.yml").write_text("all:\n  hosts:\n    r1:\n")
    assert list(load_inventory([inv]).hosts) == ["r1"]


def test_ini_groups_of_earlier_sources_can_be_named(tmp_path: Path) -> None:
    """[web:vars] and [p:children] may name groups another source defined (Ansible keeps
    one inventory across sources); a later source cannot help an earlier one."""
    first = tmp_path / "a.yml"
    first.write_text("web:\n  hosts:\n    w1:\n")
    second = tmp_path / "b.ini"
    second.write_text("[web:vars]\nport=8080\n[site:children]\nweb\n")
    inv = load_inventory([first, second])
    assert inv.host_vars("w1") == {"port": 8080}
    assert inv.groups["site"].children == ("web",)
    with pytest.raises(InventoryError, match=rf"^{second}:1: \[web:vars\] sets variables"):
        load_inventory([second, first])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("S3cr3t!Passw0rd\n", "no host name or IP address at the start of the line"),
        ("token=S3cr3t!Passw0rd\n", "key=value where a host name should be"),
    ],
)
def test_a_secret_file_is_never_read_as_hosts(tmp_path: Path, text: str, reason: str) -> None:
    """Ansible's ini plugin reads a one-line password file as a host named by the
    password. Without [sections], remoteops reads INI only when every host word is a host
    name or address, and never quotes the file."""
    path = tmp_path / "vault_pass"
    path.write_text(text)
    with pytest.raises(InventoryError) as err:
        load_inventory([path])
    assert str(err.value).startswith(f"{path}:1: {reason}; ")
    assert "S3cr3t" not in str(err.value)


def test_ini_without_sections_is_read_when_it_names_hosts(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("web1 ansible_host=10.0.0.1 ansible_port=2201\ndb[1:2] role=db\n")
    inv = load_inventory([path])
    assert list(inv.groups["ungrouped"].hosts) == ["web1", "db1", "db2"]
    assert inv.host_vars("web1") == {"ansible_host": "10.0.0.1", "ansible_port": 2201}


def _load_ini_warnings(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> tuple[Path, Inventory, list[str]]:
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="remoteops.inventory"):
        inv = load_inventory([path])
    return path, inv, [r.getMessage() for r in caplog.records]


def test_a_user_in_an_ini_host_name_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ansible takes root@web1 as the host's name; remoteops does too, and says so."""
    path, inv, warned = _load_ini_warnings(tmp_path, "[web]\nroot@web1\nweb2\n", caplog)
    assert list(inv.hosts) == ["root@web1", "web2"]
    assert warned == [
        f"{path}: line 2: a host name holds '@'; an INI host line takes no user (the name "
        "is used as the address): write HOST ansible_user=USER"
    ]


def test_ini_jinja_value_is_kept_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = "[web]\nw1 motd='{{ x }}'\n[web:vars]\nbanner={{ y }}\n"
    path, inv, warned = _load_ini_warnings(tmp_path, text, caplog)
    assert inv.host_vars("w1") == {"motd": "{{ x }}", "banner": "{{ y }}"}
    assert [message.split(";")[0] for message in warned] == [
        f"{path}:2: host 'w1': variable 'motd' holds a Jinja2 template",
        f"{path}:4: group 'web': variable 'banner' holds a Jinja2 template",
    ]


def test_toml_inventory_is_refused(tmp_path: Path) -> None:
    """Ansible's ini plugin never reads .toml (its toml plugin does): [a.b] is not a group."""
    path = tmp_path / "hosts.toml"
    path.write_text("[web.hosts]\nw1 = {}\n")
    with pytest.raises(InventoryError, match="TOML inventories are not supported"):
        load_inventory([path])


def test_ini_connection_values(tmp_path: Path) -> None:
    """What an INI inventory says about connecting, as remoteops uses it."""
    path = tmp_path / "hosts.ini"
    path.write_text(
        "[app]\nweb1:2222 ansible_host=10.0.0.5\n"
        "[app:vars]\nansible_become=true\n"
        "ansible_ssh_common_args='-o ProxyJump=\"jump host\" -o ConnectTimeout=5'\n"
    )
    conn = load_inventory([path]).connection_vars("web1")
    assert (conn.address, conn.port, conn.become) == ("10.0.0.5", 2222, True)
    assert conn.proxy_jump == "jump host"


def test_ini_fast_paths_agree_with_shlex_and_literal_eval() -> None:
    """Host lines without quotes, backslashes or '#' skip shlex, and bare words skip
    ast.literal_eval (for speed on big inventories); both must give the same answers."""
    import ast
    import random
    import shlex

    from remoteops import inventory_ini

    rng = random.Random(12)
    chars = "ab_Z09.-/:@%+=, \t\x0b\xa0éλ()[]{}*~!$&|<>?^`;"
    for _ in range(5000):
        line = "".join(rng.choice(chars) for _ in range(rng.randint(1, 25))).strip()
        if line and not inventory_ini._SHLEX_SPECIAL.search(line):
            assert inventory_ini._SHLEX_SPACE.split(line) == shlex.split(line, comments=True)
    words = ["True", "False", "None", "inf", "not", "lambda", "a.b", "x-1", "True-1", "a:b"]
    words += ["".join(rng.choice("aT_rueNonF1.-/:@%+jeλ") for _ in range(9)) for _ in range(3000)]
    for word in words:
        try:
            expected = ast.literal_eval(word)
        except (ValueError, SyntaxError):
            expected = word
        assert inventory_ini.ini_value(word) == expected, word


def test_executable_ini_without_shebang_is_ini(tmp_path: Path) -> None:
    """Ansible's script plugin cannot run a file without #! and its ini plugin reads it
    (a mount that marks every file executable); a file with #! is a script."""
    path = tmp_path / "hosts"
    path.write_text("[web]\nw1 port=80\n")
    path.chmod(0o755)
    assert load_inventory([path]).host_vars("w1") == {"port": 80}
    path.write_text("#!/bin/sh\necho '{}'\n")
    with pytest.raises(InventoryError, match="executable inventory scripts are not supported"):
        load_inventory([path])

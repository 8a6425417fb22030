"""Templates: values shell-quoted in commands, never templated twice, sandboxed."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from jinja2 import TemplateError

from remoteops.playbook.template import TemplateSyntaxProblem, compile_template

HOSTILE = [
    "x; rm -rf /",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "a'b\"c",
    "line1\nline2; id",
    "{{ 7 * 7 }}",
    "--help",
    "",
    "*",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_value_becomes_one_literal_word(value: str) -> None:
    command = compile_template("printf %s {{ v }}", "shell").render({"v": value})
    assert shlex.split(command) == ["printf", "%s", value]
    # And the shell itself agrees: it prints the value, runs nothing else.
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    assert out.stdout == value


def test_values_are_never_templated_twice() -> None:
    out = compile_template("{{ v }}", "text").render({"v": "{{ 7 * 7 }}{% raw %}"})
    assert out == "{{ 7 * 7 }}{% raw %}"


def test_raw_and_quote_are_explicit_choices() -> None:
    template = compile_template("echo {{ a | raw }} {{ b | quote }} {{ c | raw | upper }}", "shell")
    assert template.render({"a": "x > y", "b": "p q", "c": "r s"}) == "echo x > y 'p q' 'R S'"


def test_expressions_and_non_strings_are_quoted_as_a_whole() -> None:
    template = compile_template("echo {{ a ~ ' ' ~ b }} {{ n }} {{ none }} {{ flag }}", "shell")
    rendered = template.render({"a": "1", "b": "; id", "n": 42, "none": None, "flag": True})
    assert rendered == "echo '1 ; id' 42 '' true"


@pytest.mark.parametrize(
    "source",
    [
        "echo '{{ v }}'",
        'echo "{{ v }}"',
        'echo "a $(cat {{ v }})"',
        "cat <<EOF\n{{ v }}\nEOF",
        "cat <<'EOF' > f\n{{ v }}\nEOF",
    ],
)
def test_values_where_quoting_cannot_protect_them_are_refused(source: str) -> None:
    with pytest.raises(TemplateSyntaxProblem):
        compile_template(source, "shell")


@pytest.mark.parametrize(
    "source",
    [
        "echo {{ v }} # it's fine",
        "echo 'literal' {{ v }} \"also\" {{ v }}",
        "echo \\' {{ v }}",
        "grep -c x <<< {{ v }}",
        "echo '{{ v | raw }}'",
        "echo --opt={{ v }}",
    ],
)
def test_values_outside_quotes_are_accepted(source: str) -> None:
    compile_template(source, "shell")


@pytest.mark.parametrize(
    "source",
    ["{{ ''.__class__.__mro__ }}", "{{ d.update({'a': 1}) }}", "{{ l.append(1) }}"],
)
def test_the_sandbox_refuses_python_internals_and_mutation(source: str) -> None:
    with pytest.raises(TemplateError):
        compile_template(source, "text").render({"d": {}, "l": []})


def test_undefined_names_raise_and_guarded_ones_are_not_counted() -> None:
    template = compile_template(
        "{{ a }} {{ b | default('x') }} {% if c is defined %}{{ c }}{% endif %} {{ r.rc }}",
        "text",
    )
    assert template.names == {"a", "r"}
    assert ("r", "rc") in template.fields
    with pytest.raises(TemplateError):
        template.render({"r": {"rc": 0}})
    assert template.render({"a": 1, "r": {"rc": 0}}) == "1 x  0"


def test_loop_variables_are_not_undefined() -> None:
    template = compile_template("{% for h in hosts %}{{ h }} {% endfor %}", "shell")
    assert template.names == {"hosts"}
    assert template.render({"hosts": ["a b", "c"]}) == "'a b' c "


def test_majority_and_extract_filters() -> None:
    expr = compile_template(
        "hosts | map('extract', hv, 'ver') | map(attribute='stdout') | majority", "expr"
    )
    hv = {"a": {"ver": {"stdout": "1.0"}}, "b": {"ver": {"stdout": "2.0"}}}
    hv["c"] = {"ver": {"stdout": "2.0"}}
    assert expr.evaluate({"hosts": ["a", "b", "c"], "hv": hv}) == "2.0"


def test_extract_of_a_missing_key_is_a_template_error_naming_it() -> None:
    """A result registered on no host yet: a TemplateError the runner reports, not a KeyError."""
    expr = compile_template("hosts | map('extract', hv, ['ver', 'stdout']) | majority", "expr")
    with pytest.raises(TemplateError, match=r"extract: \['b'\] has no 'ver'"):
        expr.evaluate({"hosts": ["a", "b"], "hv": {"a": {"ver": {"stdout": "1"}}, "b": {}}})
    with pytest.raises(TemplateError, match=r"extract: the container has no 'z'"):
        compile_template("'z' | extract(hv)", "expr").evaluate({"hv": {}})

#!/bin/sh
# Re-record the answers of ansible-core for every case (see ../../README-ansible.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${ANSIBLE_VENV:-/tmp/ansible-venv}
if [ ! -x "$venv/bin/ansible" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "ansible-core>=2.19,<2.20"
fi
exec python3 "$here/regenerate.py" --ansible-bin "$venv/bin" "$@"

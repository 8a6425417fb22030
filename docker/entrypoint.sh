#!/bin/sh
# Give each container its own host key and sudo password, then run sshd in the
# foreground exactly as the lab does (-D, log to stderr).
set -eu
if [ ! -f /etc/ssh/ssh_host_ed25519_key ]; then
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
fi
if [ ! -f /etc/ssh/become_password ]; then
    umask 077
    head -c 18 /dev/urandom | base64 | tr -d '/+=' > /etc/ssh/become_password
    printf 'rolab:%s\n' "$(cat /etc/ssh/become_password)" | chpasswd
fi
if [ ! -s /etc/ssh/authorized_keys/rolab ]; then
    echo "no client key: mount your public key at /etc/ssh/authorized_keys/rolab" >&2
    exit 2
fi
echo "host key: $(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)" >&2
exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config

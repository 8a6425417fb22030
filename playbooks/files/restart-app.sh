#!/bin/sh
# Stand-in for `systemctl restart app` on the lab: "restarts" the app by
# recording which configuration it loaded. Arguments: APP_DIR.
set -eu
app_dir=$1
test -r "$app_dir/app.conf"
sha256sum "$app_dir/app.conf" | cut -d' ' -f1 > "$app_dir/loaded.sha256"
echo "restarted with $(grep -c = "$app_dir/app.conf") settings"

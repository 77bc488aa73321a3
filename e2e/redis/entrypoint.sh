#!/bin/sh
# redis-server as user redis on localhost only, with REDIS_PASSWORD (in a
# configuration file only redis reads, not in its arguments) and its data in
# /data.
set -eu
: "${REDIS_PASSWORD:?REDIS_PASSWORD is required}"
chown redis:redis /data
conf=/run/redis.conf
umask 077
pw=$(printf '%s' "$REDIS_PASSWORD" | sed 's/\\/\\\\/g; s/"/\\"/g')
printf 'bind 127.0.0.1\nport 6379\ndir /data\nappendonly yes\nenable-debug-command local\nrequirepass "%s"\n' "$pw" > "$conf"
chown redis "$conf"
exec setpriv --reuid=redis --regid=redis --init-groups redis-server "$conf"

#!/bin/sh
# First start: an empty data directory is initialised. Every start sets root's
# password from MARIADB_ROOT_PASSWORD (an init file only the server reads),
# then runs the server as mysql on localhost only (the pod's network namespace),
# with its binary log on (row format) for point-in-time recovery.
set -eu
: "${MARIADB_ROOT_PASSWORD:?MARIADB_ROOT_PASSWORD is required}"
chown mysql:mysql /var/lib/mysql /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
fi
init=/run/mysqld/init.sql
umask 077
pw=$(printf '%s' "$MARIADB_ROOT_PASSWORD" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g")
printf "ALTER USER 'root'@'localhost' IDENTIFIED BY '%s';\nCREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '%s';\nGRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n" "$pw" "$pw" > "$init"
chown mysql "$init"
exec mariadbd --user=mysql --datadir=/var/lib/mysql --bind-address=127.0.0.1 --init-file="$init" \
  --log-bin=mysql-bin --binlog-format=ROW --server-id=1

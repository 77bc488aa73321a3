#!/usr/bin/env bash
# Installs what Remora's demo and tests need on Debian/Ubuntu, if missing:
# the PostgreSQL, MariaDB and Redis servers and client tools, zstd and age (the tests restore with
# them alone), curl and python3 for the demo script, and rclone, sftp and smbclient for make bench. Go itself must already
# be installed (https://go.dev/doc/install).
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1; }
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
have pg_dump && have pg_restore && have psql && have pgbench || missing+=(postgresql-client)
have zstd || missing+=(zstd)
[ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
have mariadb && have mariadb-dump || missing+=(mariadb-client)
have redis-server || missing+=(redis-server)
have redis-cli && have redis-check-rdb || missing+=(redis-tools)
have age || missing+=(age)
have curl || missing+=(curl ca-certificates)
have python3 || missing+=(python3)
have node && have npm || missing+=(nodejs npm) # make bin/azurite: the Azure Blob test server
have rclone || missing+=(rclone) # make bench: the operator's shell pipeline uploads with it
[ -x /usr/sbin/apache2 ] && [ -e /usr/lib/apache2/modules/mod_dav_fs.so ] || missing+=(apache2) # the WebDAV test server
[ -x /usr/sbin/smbd ] && have smbpasswd || missing+=(samba) # the smb:// storage tests' server
[ -x /usr/sbin/vsftpd ] || missing+=(vsftpd) # the FTP storage tests
[ -x /usr/sbin/sshd ] || missing+=(openssh-server) # the SFTP storage tests run sshd
have sftp || missing+=(openssh-client) # make bench: the standard SFTP client
have smbclient || missing+=(smbclient) # make bench: the standard SMB client

if ! have go; then
  echo "install-deps: Go is not installed; see https://go.dev/doc/install" >&2
  exit 1
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
install() { $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
# An install sometimes fails on a half-fetched archive; a second try works.
install || { sleep 2; install; }

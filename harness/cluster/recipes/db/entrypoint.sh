#!/bin/bash
# mc-db entrypoint: initialise an empty datadir, then run mariadbd with an --init-file that
# (re)creates the database and users from the environment on every start (idempotent).
set -euo pipefail

DATADIR=/var/lib/mysql
: "${MC_DB_NAME:?MC_DB_NAME must be set (database to create)}"
: "${MC_DB_USER:?MC_DB_USER must be set (user to create)}"
: "${MC_DB_PASSWORD:?MC_DB_PASSWORD must be set}"
: "${MC_DB_ROOT_PASSWORD:?MC_DB_ROOT_PASSWORD must be set}"

for pair in "MC_DB_NAME=$MC_DB_NAME" "MC_DB_USER=$MC_DB_USER"; do
  if [[ ! "${pair#*=}" =~ ^[A-Za-z0-9_]{1,32}$ ]]; then
    echo "mc-db: ${pair%%=*} must match [A-Za-z0-9_]{1,32}, got '${pair#*=}'" >&2
    exit 2
  fi
done

sql_string() {  # quote a value as a SQL string literal
  local s=${1//\\/\\\\}
  s=${s//\'/\\\'}
  printf "'%s'" "$s"
}

mkdir -p "$DATADIR" /run/mysqld
chown mysql:mysql "$DATADIR" /run/mysqld
chmod 0750 "$DATADIR"

if [ ! -d "$DATADIR/mysql" ]; then
  echo "mc-db: initialising empty datadir $DATADIR"
  mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
    --auth-root-authentication-method=normal --skip-name-resolve >/dev/null
  echo "mc-db: datadir initialised"
fi

ROOT_PW=$(sql_string "$MC_DB_ROOT_PASSWORD")
USER_PW=$(sql_string "$MC_DB_PASSWORD")
INIT=/run/mysqld/mc-init.sql
umask 077
cat >"$INIT" <<SQL
CREATE DATABASE IF NOT EXISTS \`$MC_DB_NAME\`;
CREATE USER IF NOT EXISTS '$MC_DB_USER'@'%' IDENTIFIED BY $USER_PW;
ALTER USER '$MC_DB_USER'@'%' IDENTIFIED BY $USER_PW;
GRANT ALL PRIVILEGES ON \`$MC_DB_NAME\`.* TO '$MC_DB_USER'@'%';
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY $ROOT_PW;
ALTER USER 'root'@'%' IDENTIFIED BY $ROOT_PW;
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED BY $ROOT_PW;
FLUSH PRIVILEGES;
SQL
chown mysql:mysql "$INIT"

exec mariadbd --user=mysql --datadir="$DATADIR" --init-file="$INIT" \
  --bind-address=0.0.0.0 --port=3306 --default-time-zone=+00:00 "$@"

#!/bin/sh
# Entrypoint of the local stand-in for the edoburu/pgbouncer image (make container-test).
# It honours that image's environment contract as far as compose.yaml's `scale` profile uses it:
#   DB_HOST, DB_PORT (5432), DB_USER, DB_PASSWORD, DB_NAME (every database when unset),
#   AUTH_TYPE (md5), POOL_MODE (session), DEFAULT_POOL_SIZE (20), MAX_CLIENT_CONN (100),
#   LISTEN_PORT (5432); the config is written to /etc/pgbouncer at each start, and PgBouncer runs
#   in the foreground as the postgres user (it refuses root).
set -eu

: "${DB_HOST:?DB_HOST is required}" "${DB_USER:?DB_USER is required}"
: "${DB_PASSWORD:?DB_PASSWORD is required}"
conf=/etc/pgbouncer
mkdir -p "$conf"
umask 077
# The password in clear: PgBouncer needs it to answer SCRAM on both sides.
printf '"%s" "%s"\n' "$DB_USER" "$DB_PASSWORD" > "$conf/userlist.txt"
cat > "$conf/pgbouncer.ini" <<INI
[databases]
* = host=${DB_HOST} port=${DB_PORT:-5432}${DB_NAME:+ dbname=$DB_NAME}

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = ${LISTEN_PORT:-5432}
unix_socket_dir =
auth_type = ${AUTH_TYPE:-md5}
auth_file = ${conf}/userlist.txt
admin_users = ${DB_USER}
pool_mode = ${POOL_MODE:-session}
default_pool_size = ${DEFAULT_POOL_SIZE:-20}
max_client_conn = ${MAX_CLIENT_CONN:-100}
ignore_startup_parameters = extra_float_digits
INI
chown -R postgres:postgres "$conf"
exec setpriv --reuid=postgres --regid=postgres --init-groups pgbouncer "$conf/pgbouncer.ini"

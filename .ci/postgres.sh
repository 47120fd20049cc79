# Sourced by .ci/run: starts a throwaway PostgreSQL 15 cluster for the test
# suite (trust auth on 127.0.0.1, TLS with a CA made here, a free port) and
# exports SCIMD_TEST_DATABASE_URL and SCIMD_TEST_DATABASE_CA for the tests.
# The cluster is stopped and its files removed when .ci/run exits.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PG_ROOT=$(mktemp -d /tmp/scimd-ci-pg.XXXXXX)
PG_DATA=$PG_ROOT/data
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_postgres() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_ROOT"
}
trap stop_postgres EXIT
[ "$(id -u)" = 0 ] && chown postgres: "$PG_ROOT"
as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --no-locale --no-sync >/dev/null
# A CA and a server certificate for 127.0.0.1, so that the TLS test runs too.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=scimd CI CA" \
  -keyout "$PG_ROOT/ca.key" -out "$PG_ROOT/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$PG_DATA/server.key" -out "$PG_ROOT/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$PG_ROOT/san.ext"
openssl x509 -req -in "$PG_ROOT/server.csr" -CA "$PG_ROOT/ca.pem" -CAkey "$PG_ROOT/ca.key" \
  -CAcreateserial -days 2 -extfile "$PG_ROOT/san.ext" -out "$PG_DATA/server.crt" 2>/dev/null
chmod 600 "$PG_DATA/server.key"
[ "$(id -u)" = 0 ] && chown postgres: "$PG_DATA/server.key" "$PG_DATA/server.crt"
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_ROOT/log" -w -o \
  "-p $PG_PORT -k $PG_ROOT -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c ssl=on" \
  start >/dev/null
export SCIMD_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
export SCIMD_TEST_DATABASE_CA="$PG_ROOT/ca.pem"
echo "PostgreSQL for the tests: $SCIMD_TEST_DATABASE_URL"

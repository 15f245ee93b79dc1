# scripts/lib.sh: shell functions the test, bench and check scripts share. Source it; it sets nothing else.

# A TCP port free on loopback now (the kernel's pick; a race with other binders is possible but harmless here).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Runs a command as the PostgreSQL server user when we are root, started in / (a clone under a 0700 folder is
# no place that user may enter); as ourselves otherwise.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- /usr/bin/env -C / "$@"; else "$@"; fi; }

# start_postgres BIN DIR PORT [SERVER OPTION ...]: initialises a throwaway cluster in DIR/pg (trust, C locale) and
# starts it on 127.0.0.1:PORT with its socket in DIR/sock and its log in DIR/pglog/pg.log; extra options are
# passed to the server as given (e.g. "-c fsync=off"). Prints the log and returns 1 when either step fails.
start_postgres() {
  local bin=$1 dir=$2 port=$3
  shift 3
  mkdir -p "$dir/pg" "$dir/sock" "$dir/pglog"
  # The server runs as postgres when we are root: it must own its data, socket and log folders.
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir/pg" "$dir/sock" "$dir/pglog"; fi
  as_pg "$bin/initdb" -D "$dir/pg" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log"; return 1; }
  as_pg "$bin/pg_ctl" -D "$dir/pg" -w -l "$dir/pglog/pg.log" \
    -o "-k $dir/sock -p $port -c listen_addresses=127.0.0.1 $*" start >/dev/null \
    || { cat "$dir/pglog/pg.log"; return 1; }
}

# stop_postgres BIN DIR: stops the cluster start_postgres started in DIR at once (nothing in it is kept).
stop_postgres() { as_pg "$1/pg_ctl" -D "$2/pg" -m immediate stop >/dev/null 2>&1; }

# stop_process PID: ends a background process of this shell and waits for it (nothing when PID is empty).
stop_process() { [ -n "$1" ] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null; return 0; }

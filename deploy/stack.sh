#!/usr/bin/env bash
# Local services for development and tests, without Docker:
#   - a single-node Apache Kafka broker (KRaft, broker+controller), run from Maven Central jars;
#   - a private redis-server instance (Debian package).
#
# Usage: deploy/stack.sh start|stop|status|kafka-start|kafka-stop|redis-start|redis-stop
#                        kafka-fetch|redis-install
#
# Environment (relative paths are relative to the repository root):
#   SANCTIONGATE_RUN_DIR                pid files, logs, data          (default .run/dev)
#   SANCTIONGATE_CACHE_DIR              downloaded Kafka jars          (default .cache)
#   SANCTIONGATE_KAFKA_PORT             client listener                (default 9092)
#   SANCTIONGATE_KAFKA_CONTROLLER_PORT  KRaft controller listener      (default 9093)
#   SANCTIONGATE_REDIS_PORT             redis                          (default 6379)
#   SANCTIONGATE_KAFKA_HEAP             JVM heap flags                 (default -Xms256m -Xmx1g)
#   SANCTIONGATE_KAFKA_START_TIMEOUT    seconds to wait for the broker (default 60)
# Everything listens on 127.0.0.1 only. `status` exits 3 when a service is not running.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$ROOT/$1" ;; esac; }

KAFKA_VERSION=4.1.1 # keep in step with deploy/kafka/pom.xml
RUN_DIR=$(abspath "${SANCTIONGATE_RUN_DIR:-.run/dev}")
CACHE_DIR=$(abspath "${SANCTIONGATE_CACHE_DIR:-.cache}")
KAFKA_PORT=${SANCTIONGATE_KAFKA_PORT:-9092}
CONTROLLER_PORT=${SANCTIONGATE_KAFKA_CONTROLLER_PORT:-9093}
REDIS_PORT=${SANCTIONGATE_REDIS_PORT:-6379}
KAFKA_HEAP=${SANCTIONGATE_KAFKA_HEAP:--Xms256m -Xmx1g}
KAFKA_START_TIMEOUT=${SANCTIONGATE_KAFKA_START_TIMEOUT:-60}

POM=$ROOT/deploy/kafka/pom.xml
LOG4J2=$ROOT/deploy/kafka/log4j2.xml
KAFKA_LIBS=$CACHE_DIR/kafka-$KAFKA_VERSION/libs
KAFKA_DIR=$RUN_DIR/kafka
KAFKA_PROPS=$KAFKA_DIR/server.properties
KAFKA_PID=$RUN_DIR/kafka.pid
KAFKA_LOG=$RUN_DIR/kafka.log
REDIS_PID=$RUN_DIR/redis.pid
REDIS_LOG=$RUN_DIR/redis.log
KAFKA_JAVA=(java -cp "$KAFKA_LIBS/*" -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$LOG4J2" -Dsanctiongate.kafka.log="$KAFKA_LOG")

say() { printf '%s\n' "$*"; }
die() { printf 'stack.sh: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
since() { local t=$(($(now_ms) - $1)); printf '%d.%01d s' $((t / 1000)) $((t % 1000 / 100)); }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# running PIDFILE PATTERN -> prints the pid when the pid file names a live process whose command
# line contains PATTERN (guards against pid reuse); removes a stale pid file.
running() {
  local pid cmdline=
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] && cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  if [[ -n $cmdline && $cmdline == *"$2"* ]]; then
    say "$pid"
    return 0
  fi
  rm -f "$1"
  return 1
}

# stop_service NAME PIDFILE PATTERN: SIGTERM, up to 30 s grace, then SIGKILL. Only our own pid.
stop_service() {
  local pid i
  if ! pid=$(running "$2" "$3"); then
    say "$1: not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    running "$2" "$3" >/dev/null || break
    sleep 0.1
  done
  if running "$2" "$3" >/dev/null; then
    say "$1: pid $pid still alive after 30 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while running "$2" "$3" >/dev/null; do sleep 0.1; done
  fi
  rm -f "$2"
  say "$1: stopped (pid $pid)"
}

apt_install() {
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0)
  command -v apt-get >/dev/null || die "apt-get not found: install $* yourself"
  # Fresh machines have no package lists; stale lists give 404s. Refresh and retry in both cases.
  as_root "${apt[@]}" install --no-install-recommends "$@" ||
    { as_root "${apt[@]}" update && as_root "${apt[@]}" install --no-install-recommends "$@"; }
}

# ---------------------------------------------------------------------------------- kafka --
kafka_fetch() {
  local want tmp
  want="$(sha256sum "$POM" | cut -d' ' -f1) $KAFKA_VERSION"
  [[ -f $KAFKA_LIBS/.complete && $(<"$KAFKA_LIBS/.complete") == "$want" ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  say "kafka: fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
  tmp=$KAFKA_LIBS.tmp.$$
  rm -rf "$tmp"
  mkdir -p "$(dirname "$KAFKA_LIBS")"
  if ! mvn -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
    grep -E 'ERROR|FAIL' "$tmp.log" >&2 || tail -n 30 "$tmp.log" >&2
    die "kafka: mvn could not fetch the jars (full log: $tmp.log)"
  fi
  rm -f "$tmp.log"
  printf '%s\n' "$want" >"$tmp/.complete"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
}

write_kafka_props() {
  mkdir -p "$KAFKA_DIR/data"
  cat >"$KAFKA_PROPS" <<EOF
# Generated by deploy/stack.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
}

# Ready = the client listener answers a Metadata request that lists this broker
# (KRaft enables request processing only once the broker is registered and unfenced).
kafka_ready() {
  python3 - "$KAFKA_PORT" <<'PY' 2>/dev/null
import socket, struct, sys
def recv(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
    # Metadata v4 (header v1): all topics (null array), no auto-creation.
    req = struct.pack(">hhih", 3, 4, 1, 2) + b"sg" + struct.pack(">ib", -1, 0)
    s.sendall(struct.pack(">i", len(req)) + req)
    resp = recv(s, struct.unpack(">i", recv(s, 4))[0])
    corr, _throttle, brokers = struct.unpack(">iii", resp[:12])
    sys.exit(0 if corr == 1 and brokers > 0 else 1)
PY
}

kafka_start() {
  local pid t0 p id
  if pid=$(running "$KAFKA_PID" "$KAFKA_PROPS"); then
    say "kafka: already running on 127.0.0.1:$KAFKA_PORT, pid $pid, log $KAFKA_LOG"
    return 0
  fi
  command -v java >/dev/null || die "java not found (Kafka $KAFKA_VERSION needs Java 17+)"
  for p in "$KAFKA_PORT" "$CONTROLLER_PORT"; do
    ! port_open "$p" || die "kafka: port $p on 127.0.0.1 is already in use by another process"
  done
  kafka_fetch
  t0=$(now_ms)
  write_kafka_props
  if [[ ! -f $KAFKA_DIR/data/meta.properties ]]; then
    id=$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=").replace("-", "_"))')
    "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format --cluster-id "$id" --config "$KAFKA_PROPS" \
      >"$RUN_DIR/kafka-format.out" 2>&1 || die "kafka: storage format failed: $(cat "$RUN_DIR/kafka-format.out")"
  fi
  # setsid: a Ctrl-C in the caller's terminal must not kill the broker behind our back.
  # shellcheck disable=SC2086 # KAFKA_HEAP is a list of flags
  setsid "${KAFKA_JAVA[@]}" $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError kafka.Kafka "$KAFKA_PROPS" </dev/null >"$RUN_DIR/kafka.out" 2>&1 9>&- &
  pid=$!
  say "$pid" >"$KAFKA_PID"
  while ! kafka_ready; do
    if ! running "$KAFKA_PID" "$KAFKA_PROPS" >/dev/null; then
      tail -n 20 "$RUN_DIR/kafka.out" >&2
      grep -E '^\[[^]]*\] (ERROR|FATAL)' "$KAFKA_LOG" 2>/dev/null | tail -n 10 >&2 || true
      die "kafka: broker exited during start-up (see $KAFKA_LOG and $RUN_DIR/kafka.out)"
    fi
    if (($(now_ms) - t0 > KAFKA_START_TIMEOUT * 1000)); then
      stop_service kafka "$KAFKA_PID" "$KAFKA_PROPS" >&2
      die "kafka: not ready after ${KAFKA_START_TIMEOUT} s (see $KAFKA_LOG)"
    fi
    sleep 0.2
  done
  say "kafka: ready on 127.0.0.1:$KAFKA_PORT (controller 127.0.0.1:$CONTROLLER_PORT), pid $pid, log $KAFKA_LOG ($(since "$t0"))"
}

kafka_stop() { stop_service kafka "$KAFKA_PID" "$KAFKA_PROPS"; }

# ---------------------------------------------------------------------------------- redis --
redis_install() {
  command -v redis-server >/dev/null && return 0
  say "redis: redis-server not found, installing the Debian package"
  apt_install redis-server || die "redis: apt-get install redis-server failed"
  # The package starts a system-wide service on 6379, which would clash with our dev instance.
  # We just installed it and never use it: stop and disable it.
  if [[ -d /run/systemd/system ]]; then
    as_root systemctl disable --now redis-server.service || true
  elif [[ -x /etc/init.d/redis-server ]]; then
    as_root /etc/init.d/redis-server stop || true
  fi
}

redis_start() {
  local pid t0 i
  if pid=$(running "$REDIS_PID" "127.0.0.1:$REDIS_PORT"); then
    say "redis: already running on 127.0.0.1:$REDIS_PORT, pid $pid, log $REDIS_LOG"
    return 0
  fi
  ! port_open "$REDIS_PORT" || die "redis: port $REDIS_PORT on 127.0.0.1 is already in use by \
another process (a system redis-server service? stop it, or set SANCTIONGATE_REDIS_PORT)"
  redis_install
  t0=$(now_ms)
  mkdir -p "$RUN_DIR/redis"
  # hash-max-listpack-value: index records (~150-250 B) stay in listpack-encoded buckets
  # (docs/operations.md, "Redis: memory and the index format").
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --hash-max-listpack-value 512 \
    --daemonize yes --pidfile "$REDIS_PID" --dir "$RUN_DIR/redis" --logfile "$REDIS_LOG" 9>&- ||
    die "redis: redis-server failed to start (see $REDIS_LOG)"
  for ((i = 0; i < 100; i++)); do
    if [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] &&
      pid=$(running "$REDIS_PID" "127.0.0.1:$REDIS_PORT"); then
      say "redis: ready on 127.0.0.1:$REDIS_PORT, pid $pid, log $REDIS_LOG ($(since "$t0"))"
      return 0
    fi
    sleep 0.1
  done
  die "redis: no PONG on 127.0.0.1:$REDIS_PORT after 10 s (see $REDIS_LOG)"
}

redis_stop() { stop_service redis "$REDIS_PID" "127.0.0.1:$REDIS_PORT"; }

# --------------------------------------------------------------------------------- status --
status() {
  local pid rc=0
  if pid=$(running "$KAFKA_PID" "$KAFKA_PROPS"); then
    if kafka_ready; then say "kafka: running on 127.0.0.1:$KAFKA_PORT, pid $pid, log $KAFKA_LOG"
    else say "kafka: pid $pid alive but not answering on 127.0.0.1:$KAFKA_PORT, log $KAFKA_LOG"; rc=3; fi
  else
    say "kafka: stopped (127.0.0.1:$KAFKA_PORT, run dir $RUN_DIR)"; rc=3
  fi
  if pid=$(running "$REDIS_PID" "127.0.0.1:$REDIS_PORT"); then
    say "redis: running on 127.0.0.1:$REDIS_PORT, pid $pid, log $REDIS_LOG"
  else
    say "redis: stopped (127.0.0.1:$REDIS_PORT, run dir $RUN_DIR)"; rc=3
  fi
  return "$rc"
}

# ------------------------------------------------------------------------------------ main --
main() {
  case ${1:-} in
    start | stop | kafka-start | kafka-stop | redis-start | redis-stop)
      mkdir -p "$RUN_DIR"
      exec 9>"$RUN_DIR/.lock" # one start/stop at a time per run dir
      flock 9 ;;
  esac
  case ${1:-} in
    start) redis_start; kafka_start ;;
    stop) kafka_stop; redis_stop ;;
    kafka-start) kafka_start ;;
    kafka-stop) kafka_stop ;;
    redis-start) redis_start ;;
    redis-stop) redis_stop ;;
    status) status ;;
    kafka-fetch) kafka_fetch ;;
    redis-install) redis_install ;;
    *) sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; return 2 ;;
  esac
}

# deploy/bootstrap.sh sources this file for its functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi

#!/usr/bin/env bash
# Run a real single-node Apache Kafka broker (KRaft combined mode) for tests
# and CI, without Docker: the broker jars come from Maven Central via the
# pom.xml next to this script and are started with plain `java`.
#
#   broker.sh fetch   copy the jars into the cache (no-op when already there)
#   broker.sh start   fetch if needed, start a fresh broker, wait until it
#                     serves requests, print "127.0.0.1:<port>" as last line
#   broker.sh stop    stop the broker started for this port, delete its files
#   broker.sh status  print the address and exit 0 if our broker is running
#
# Only `start` writes to stdout (the address), so callers can do
#   KAFKA_BOOTSTRAP=$(bash .ci/kafka/broker.sh start | tail -n 1)
# Everything else (progress, Maven noise, errors) goes to stderr.
#
# Environment (all optional):
#   SPANWATCH_KAFKA_CACHE          jar cache  [~/.cache/spanwatch/kafka-<version>]
#   SPANWATCH_KAFKA_WORKDIR        runtime files base dir  [/tmp/spanwatch-kafka]
#   SPANWATCH_KAFKA_PORT           client port [19092]; controller uses port+1
#   SPANWATCH_KAFKA_HEAP_OPTS      JVM heap flags  [-Xms128m -Xmx512m]
#   SPANWATCH_KAFKA_START_TIMEOUT  seconds to wait for readiness  [90]
#   SPANWATCH_KAFKA_STOP_TIMEOUT   seconds between TERM and KILL  [30]
#   SPANWATCH_KAFKA_PYTHON         python with confluent_kafka for the
#                                  readiness probe [auto: $VIRTUAL_ENV, the
#                                  repo's .venv, python3]
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd)
POM="$SCRIPT_DIR/pom.xml"

# The pom is the single source of truth for the version, so bumping Kafka is a
# one-line change there and automatically lands in a new cache directory.
KAFKA_VERSION=$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$POM" | head -n 1)
if [[ -z "$KAFKA_VERSION" ]]; then
    echo "broker.sh: cannot read <kafka.version> from $POM" >&2
    exit 1
fi

CACHE_DIR=${SPANWATCH_KAFKA_CACHE:-$HOME/.cache/spanwatch/kafka-$KAFKA_VERSION}
LIB_DIR="$CACHE_DIR/lib"
# The marker holds a hash of the pom: present + matching means the jar set in
# lib/ is complete and belongs to the current pom (an interrupted or outdated
# fetch never leaves a matching marker behind).
MARKER="$CACHE_DIR/.fetched"

PORT=${SPANWATCH_KAFKA_PORT:-19092}
CONTROLLER_PORT=$((PORT + 1))
HOST=127.0.0.1
WORK_BASE=${SPANWATCH_KAFKA_WORKDIR:-/tmp/spanwatch-kafka}
# One run dir per port, so brokers on different ports can coexist and `stop`
# knows exactly which files belong to which broker.
RUN_DIR="$WORK_BASE/broker-$PORT"
PID_FILE="$RUN_DIR/broker.pid"
LOG_FILE="$RUN_DIR/broker.log"

HEAP_OPTS=${SPANWATCH_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}
START_TIMEOUT=${SPANWATCH_KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${SPANWATCH_KAFKA_STOP_TIMEOUT:-30}

log() { echo "broker.sh: $*" >&2; }

die() {
    log "$*"
    exit 1
}

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

is_fetched() {
    [[ -f "$MARKER" && -d "$LIB_DIR" ]] && [[ "$(cat "$MARKER")" == "$(pom_hash)" ]]
}

cmd_fetch() {
    if is_fetched; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found; it is needed once to fetch Kafka $KAFKA_VERSION"
    log "fetching Kafka $KAFKA_VERSION jars into $LIB_DIR"
    mkdir -p "$CACHE_DIR"
    # Copy into a private temp dir and rename at the end, so a concurrent or
    # interrupted fetch never leaves a half-filled lib/ that looks usable.
    local tmp
    tmp=$(mktemp -d "$CACHE_DIR/lib.tmp.XXXXXX")
    # Maven's stdout goes to stderr: stdout of this script is reserved for
    # the broker address. Maven 3.8 prints stray ANSI resets even with -q -B;
    # strip them so CI logs stay readable (pipefail keeps mvn's exit status).
    if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 |
        sed 's/\x1b\[[0-9;]*m//g' >&2; then
        rm -rf "$tmp"
        die "mvn dependency:copy-dependencies failed"
    fi
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || {
        rm -rf "$tmp"
        die "fetch finished but no kafka_2.13 jar was copied"
    }
    rm -rf "$LIB_DIR" "$MARKER"
    mv "$tmp" "$LIB_DIR"
    pom_hash >"$MARKER"
    log "fetched $(find "$LIB_DIR" -name '*.jar' | wc -l) jars"
}

# Prints the pid from the pid file if that process is alive AND is our broker.
# Checking the command line guards against killing an unrelated process that
# reused a stale pid after a reboot or crash.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid=$(cat "$PID_FILE")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    local args
    args=$(ps -o args= -p "$pid" 2>/dev/null) || return 1
    [[ "$args" == *kafka.Kafka* && "$args" == *"$RUN_DIR"* ]] || return 1
    echo "$pid"
}

port_in_use() {
    # bash's /dev/tcp: a successful connect means someone listens there.
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

cmd_stop() {
    local pid
    if pid=$(running_pid); then
        log "stopping broker pid $pid (port $PORT)"
        kill -TERM "$pid" 2>/dev/null || true
        # Poll rather than sleep a fixed time: a clean KRaft shutdown of a
        # single node usually takes a second or two.
        local deadline=$((SECONDS + STOP_TIMEOUT))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "broker did not exit within ${STOP_TIMEOUT}s, sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
    fi
    rm -rf "$RUN_DIR"
    # Remove the base dir too when no other port's broker lives in it.
    rmdir "$WORK_BASE" 2>/dev/null || true
}

# A python that can import confluent_kafka, for a real protocol-level
# readiness probe; empty when none is available.
find_probe_python() {
    local candidates=()
    [[ -n "${SPANWATCH_KAFKA_PYTHON:-}" ]] && candidates+=("$SPANWATCH_KAFKA_PYTHON")
    [[ -n "${VIRTUAL_ENV:-}" ]] && candidates+=("$VIRTUAL_ENV/bin/python")
    candidates+=("$REPO_ROOT/.venv/bin/python" python3)
    local py
    for py in "${candidates[@]}"; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import confluent_kafka' 2>/dev/null; then
            echo "$py"
            return 0
        fi
    done
    return 0
}

# One readiness attempt via the Kafka protocol: a Metadata request that lists
# our broker id proves the broker finished startup (KRaft brokers only start
# serving the client listener once registered and unfenced).
PROBE_PY='
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "socket.timeout.ms": 2000,
                     "log_level": 0})
md = admin.list_topics(timeout=3)
sys.exit(0 if 1 in md.brokers else 1)
'

write_config() {
    local data_dir=$1
    cat >"$RUN_DIR/server.properties" <<EOF
# Generated by .ci/kafka/broker.sh for tests: single node, KRaft combined mode.
process.roles=broker,controller
node.id=1
# Loopback only: nothing outside this machine may reach the test broker.
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# Static quorum of one voter: works on every 4.x release without --standalone.
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
log.dirs=$data_dir

# Test conveniences.
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
# Only one broker, so every internal topic must have replication factor 1.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Default is 50 partitions each; one is plenty for tests and makes the first
# consumer-group join / transaction noticeably faster on a small machine.
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
# Don't wait 3 s for more members before the first rebalance of a group.
group.initial.rebalance.delay.ms=0

# Small machine (2 shared cores, small heap): fewer threads, smaller buffers.
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608

# Quick shutdown: with a single replica there is no leadership to hand over,
# so skip the controlled-shutdown round trip to the controller on TERM.
controlled.shutdown.enable=false
EOF

    # log4j2 properties format needs no extra jars (the YAML one would need
    # jackson-dataformat-yaml); everything goes to stdout -> broker.log.
    # shutdownHook=disable: otherwise log4j's own JVM hook races Kafka's and
    # the shutdown messages are lost when `stop` sends TERM.
    cat >"$RUN_DIR/log4j2.properties" <<'EOF'
status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
EOF
}

fail_start() {
    log "$*"
    if [[ -f "$LOG_FILE" ]]; then
        log "last lines of $LOG_FILE:"
        tail -n 60 "$LOG_FILE" >&2
    fi
    exit 1
}

cmd_start() {
    command -v java >/dev/null 2>&1 || die "java not found (Kafka $KAFKA_VERSION needs Java 17+)"
    cmd_fetch

    # Idempotency: a broker we already started on this port is stopped and
    # replaced, never reused. Tests then always begin from an empty cluster
    # (no topics, offsets or groups left over from an earlier run).
    if running_pid >/dev/null; then
        log "a broker is already running on port $PORT; restarting it fresh"
    fi
    cmd_stop

    local p
    for p in "$PORT" "$CONTROLLER_PORT"; do
        if port_in_use "$p"; then
            die "port $HOST:$p is already in use by another process; set SPANWATCH_KAFKA_PORT"
        fi
    done

    mkdir -p "$RUN_DIR"
    local data_dir
    data_dir=$(mktemp -d "$RUN_DIR/data.XXXXXX")
    write_config "$data_dir"

    local jvm_opts
    # shellcheck disable=SC2206  # HEAP_OPTS is a list of flags, split on purpose
    jvm_opts=($HEAP_OPTS
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$RUN_DIR/log4j2.properties")

    # Kafka cluster ids are 16 random bytes in URL-safe base64 without
    # padding. A leading '-' would be parsed as an option, so avoid it (Kafka's
    # own Uuid.randomUuid does the same).
    local cluster_id
    cluster_id=-
    while [[ "$cluster_id" == -* ]]; do
        cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done

    log "formatting storage in $data_dir (cluster id $cluster_id)"
    # The storage tool is a short-lived JVM: C1-only JIT and the serial GC
    # make it start measurably faster (~0.8 s instead of ~1.2 s here).
    if ! java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        "-Dlog4j2.configurationFile=$RUN_DIR/log4j2.properties" \
        -cp "$LIB_DIR/*" kafka.tools.StorageTool format \
        --config "$RUN_DIR/server.properties" --cluster-id "$cluster_id" \
        >>"$LOG_FILE" 2>&1; then
        fail_start "formatting the KRaft storage failed"
    fi

    log "starting Kafka $KAFKA_VERSION on $HOST:$PORT (controller $HOST:$CONTROLLER_PORT)"
    # stdin from /dev/null and stdout/stderr to the log file: the broker must
    # not hold the caller's pipes open, or `$(broker.sh start)` would hang.
    java "${jvm_opts[@]}" -cp "$LIB_DIR/*" kafka.Kafka "$RUN_DIR/server.properties" \
        </dev/null >>"$LOG_FILE" 2>&1 &
    local pid=$!
    echo "$pid" >"$PID_FILE"

    local probe_py
    probe_py=$(find_probe_python)
    if [[ -n "$probe_py" ]]; then
        log "waiting for readiness (Metadata request via $probe_py)"
    else
        log "waiting for readiness (log line + TCP port; no confluent_kafka found)"
    fi

    local deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            # Reap it to get the exit status for the message.
            local rc=0
            wait "$pid" || rc=$?
            rm -f "$PID_FILE"
            fail_start "broker process exited during startup (exit code $rc)"
        fi
        # The TCP port opens before the broker is ready (connections just
        # queue), so it is only a cheap precondition for the real check.
        if port_in_use "$PORT"; then
            if [[ -n "$probe_py" ]]; then
                if "$probe_py" -c "$PROBE_PY" "$HOST:$PORT" >/dev/null 2>&1; then
                    break
                fi
            elif grep -q 'Kafka Server started' "$LOG_FILE"; then
                break
            fi
        fi
        if ((SECONDS >= deadline)); then
            # Don't leave a half-started broker behind for the next step.
            cmd_stop_keep_log
            fail_start "broker not ready after ${START_TIMEOUT}s"
        fi
        sleep 0.3
    done

    log "broker ready (pid $pid, log $LOG_FILE)"
    echo "$HOST:$PORT"
}

# Kill the broker but keep RUN_DIR so fail_start can still show the log.
cmd_stop_keep_log() {
    local pid
    if pid=$(running_pid); then
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

cmd_status() {
    local pid
    if pid=$(running_pid); then
        log "running: pid $pid, log $LOG_FILE"
        echo "$HOST:$PORT"
    else
        log "not running on port $PORT"
        return 1
    fi
}

usage() {
    echo "usage: $0 {fetch|start|stop|status}" >&2
    exit 2
}

[[ $# -eq 1 ]] || usage
case "$1" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) usage ;;
esac

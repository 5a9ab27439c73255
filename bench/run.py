"""spanwatch performance bench: throughput, scaling, alert latency, memory and backtest speed.

    .venv/bin/python bench/run.py --quick          # < 2 minutes, the figures of one glance
    .venv/bin/python bench/run.py                  # full: bigger N, more runs, real-time latency
    .venv/bin/python bench/run.py --spans 60000 --runs 5 --profile

The broker is chosen as for the tests: `SPANWATCH_TEST_KAFKA=host:port` names a real Kafka,
otherwise the embedded tansu broker is started (fetch.wait.max.ms=10 for it).

What is measured, on the same generated traffic (`bench/traffic.py`: OTLP protobuf requests as
the collector's kafka exporter writes them, several services, dialects, models, prompt versions,
a few thousand series under the shipped alerts.toml, `--rate` spans per second of event time):

decode-only      the flow's decode step (`flows.pipeline.decode_batch`: protobuf parse, normalise,
                 keying) over the messages in memory, one thread: the ceiling of the flow.
bytewax decode   Kafka -> KafkaSource -> decode step -> discard, `python -m bytewax.run`.
consume-only     Kafka -> KafkaSource -> discard (messages/s and spans/s).
e2e 1p / 2p      the real flow (`build_flow`, every rule of alerts.toml) from Kafka, with
                 `tail=False`, in 1 process and in 2 processes (`-i 0/1 -a "h:p;h:p"`). Timed
                 from the first message the source delivered (any process) to the end of the
                 run (last process; the end-of-input close-out of the windows included). The
                 fixed start-up (process start to first message: imports, rules, Kafka
                 metadata, Bytewax worker start) is reported separately as `startup`.
latency          see `measure_latency`: an injected incident (provider rate limits) published as
                 live traffic; the time from the moment the breaching minute may close
                 (its end + assembly wait + allowed lateness) to the notifier call.
memory           peak RSS per active series (1k, 10k, 100k) of the window stage in steady state
                 (see `measure_memory`).
backtest         `spanwatch.backtest.backtest` over the same traffic written as an OTLP protobuf
                 file-exporter file (reading the file included).

Every figure is the median of `--runs` runs with min-max. The last line is machine-readable:
`spans_per_s=<n> ratio_to_decode=<r> scale_2p=<s> latency_s=<l> kb_per_series=<k>`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import pickle
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/ first, not the repo
    sys.path.insert(0, str(ROOT))

from bench.traffic import MINUTE_NS, SECOND_NS, Traffic, generate  # noqa: E402

ENV_VAR = "SPANWATCH_TEST_KAFKA"
STEP_CPU = False
"""`--step-cpu`: the flow processes time each step (bench/flow_module.py); the runs print it."""
TARGETS = {
    "ratio_to_decode": 0.90, "scale_2p": 1.7, "decode_per_core": 120_000,
    "latency_s": 10.0, "kb_per_series": 50.0, "backtest": 50_000,
}


# --- small helpers ------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def line(self) -> str:
        if not self.values:
            return f"  {self.name:<34} {'-':>12}  {self.note}"
        lo, hi = min(self.values), max(self.values)
        return (f"  {self.name:<34} {_fmt(self.median):>12} {self.unit:<9} "
                f"[{_fmt(lo)} - {_fmt(hi)}] n={len(self.values)}  {self.note}").rstrip()

    def as_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "median": self.median, "min": min(self.values, default=None),
                "max": max(self.values, default=None), "runs": self.values, "note": self.note}


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> dict[str, str]:
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Hypervisor vendor"):
                info[key.strip()] = value.strip()
    except OSError:
        pass
    info["nproc"] = str(os.cpu_count())
    info["loadavg"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    try:
        meminfo = Path("/proc/meminfo").read_text()
        total_kb = int(next(line.split()[1] for line in meminfo.splitlines()
                            if line.startswith("MemTotal")))
        info["memory"] = f"{total_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    return info


# --- broker -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerInfo:
    bootstrap: str
    is_embedded: bool


@contextmanager
def broker() -> Iterator[BrokerInfo]:
    """`$SPANWATCH_TEST_KAFKA` when set (real Kafka), else an embedded tansu broker."""
    external = os.environ.get(ENV_VAR, "").strip()
    if external:
        yield BrokerInfo(external, is_embedded=False)
        return
    from spanwatch.embedded_broker import EmbeddedBroker  # noqa: PLC0415

    with EmbeddedBroker() as embedded:
        yield BrokerInfo(embedded.bootstrap, is_embedded=True)


def new_topic(info: BrokerInfo, prefix: str, partitions: int) -> str:
    from spanwatch.embedded_broker import create_topics  # noqa: PLC0415

    name = f"{prefix}-{os.urandom(4).hex()}"
    create_topics(info.bootstrap, [name], partitions=partitions)
    return name


@dataclass(frozen=True)
class Published:
    partition: int
    max_end_unix_ns: int
    wall: float


def publish(info: BrokerInfo, topic: str, traffic: Traffic, partitions: int, *,
            schedule: Callable[[int], float] | None = None,
            stop: threading.Event | None = None) -> list[Published]:
    """Messages round-robin over the partitions, in event-time order. With `schedule`
    (message index -> wall time), each message is sent at its time (live traffic); the wall
    time recorded is when the broker acknowledged it."""
    from confluent_kafka import Producer  # noqa: PLC0415

    producer = Producer({"bootstrap.servers": info.bootstrap, "linger.ms": 2 if schedule else 20,
                         "message.max.bytes": 16_000_000, "compression.type": "none"})
    out: list[Published | None] = [None] * len(traffic.messages)

    def acked(index: int, partition: int, max_end: int) -> Callable[[Any, Any], None]:
        def callback(err: Any, _msg: Any) -> None:
            if err is None:
                out[index] = Published(partition, max_end, time.time())
        return callback

    for index, message in enumerate(traffic.messages):
        if stop is not None and stop.is_set():
            break
        if schedule is not None:
            delay = schedule(index) - time.time()
            if delay > 0:
                producer.flush(delay)  # also waits for acks of earlier messages
                delay = schedule(index) - time.time()
                if delay > 0:
                    time.sleep(delay)
        partition = index % partitions
        producer.produce(topic, value=message.value, partition=partition,
                         on_delivery=acked(index, partition, message.max_end_unix_ns))
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("messages not delivered to the broker within 60 s")
    return [p for p in out if p is not None]


# --- Bytewax subprocesses -------------------------------------------------------------------------


@dataclass
class ProcessRun:
    spawn: float
    results: list[dict[str, Any]]

    @property
    def first(self) -> float:
        return float(min(r["t_first"] for r in self.results if r["t_first"] is not None))

    @property
    def end(self) -> float:
        return float(max(r["t_end"] for r in self.results))

    @property
    def last(self) -> float:
        return float(max(r["t_last"] for r in self.results if r["t_last"] is not None))

    @property
    def messages(self) -> int:
        return sum(r["messages"] for r in self.results)


def run_flow(info: BrokerInfo, topic: str, partitions: int, mode: str, processes: int,  # noqa: PLR0917
             workdir: Path, *, tail: bool = False, timeout: float = 900,
             live_file: Path | None = None, profile: bool = False
             ) -> ProcessRun | subprocess.Popen[bytes]:
    """`python -m bytewax.run bench.flow_module:flow` in `processes` processes; waits for them
    (tail=False) and returns their results, or returns the single Popen when tail=True.
    `profile`: each process runs under the py-spy sampling profiler (only samples holding the
    GIL: Python work), which writes collapsed stacks to `<results>.stacks`."""
    addresses = ";".join(f"127.0.0.1:{_free_port()}" for _ in range(processes))
    procs: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
    spawn = time.time()
    for index in range(processes):
        results = workdir / f"{mode}-{index}-{os.urandom(3).hex()}.json"
        logfile = results.with_suffix(".log")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SPANWATCH_BENCH_BOOTSTRAP": info.bootstrap,
               "SPANWATCH_BENCH_TOPIC": topic, "SPANWATCH_BENCH_PARTITIONS": str(partitions),
               "SPANWATCH_BENCH_EMBEDDED": "1" if info.is_embedded else "0",
               "SPANWATCH_BENCH_MODE": mode, "SPANWATCH_BENCH_TAIL": "1" if tail else "0",
               "SPANWATCH_BENCH_RESULTS": str(results),
               "SPANWATCH_BENCH_STEP_CPU": "1" if STEP_CPU else "0"}
        if live_file is not None:
            env["SPANWATCH_BENCH_RESULTS_LIVE"] = str(live_file)
        argv = [sys.executable, "-m", "bytewax.run", "bench.flow_module:flow"]
        if processes > 1:
            argv += ["-i", str(index), "-a", addresses]
        if profile:  # sampled: Bytewax's worker threads are out of cProfile's reach
            argv = [_py_spy(), "record", "--nonblocking", "--gil", "-r", "200", "-f", "raw",
                    "-o", str(results.with_suffix(".stacks")), "--", *argv]
        with logfile.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        procs.append((proc, results, logfile))
    if tail:
        return procs[0][0]
    deadline = time.monotonic() + timeout
    for proc, _, logfile in procs:
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other, _, _ in procs:
                other.kill()
            raise RuntimeError(f"bytewax run ({mode}) timed out; log {logfile}") from None
        if code != 0:
            tail_text = logfile.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"bytewax run ({mode}) exited {code}:\n{tail_text}")
    return ProcessRun(spawn, [json.loads(path.read_text()) for _, path, _ in procs])


# --- measurements -------------------------------------------------------------------------------


def measure_decode(traffic: Traffic, runs: int, batch: int = 100) -> Figure:
    """The flow's decode step over the messages in memory, one thread."""
    from bytewax.connectors.kafka import KafkaSourceMessage  # noqa: PLC0415

    from flows.pipeline import decode_batch, tune_gc  # noqa: PLC0415
    from ingest.decode import Decoder  # noqa: PLC0415
    from spanwatch.settings import Settings  # noqa: PLC0415

    tune_gc()  # as in the flow's processes (build_flow), so the ratio compares like with like
    decoder = Decoder(Settings(_env_file=None).ingest)  # type: ignore[call-arg]
    items: list[Any] = [KafkaSourceMessage(key=None, value=m.value, topic="bench", partition=0,
                                           offset=i) for i, m in enumerate(traffic.messages)]
    figure = Figure("decode-only (in-process, 1 core)", "spans/s")
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        for i in range(0, len(items), batch):
            decode_batch(decoder, items[i:i + batch])
        figure.values.append(traffic.spans / (time.perf_counter() - started))
    return figure


def throughput(run: ProcessRun, spans: int) -> float:
    return spans / (run.end - run.first)


def work_cpu(run: ProcessRun) -> list[float]:
    """Each process' CPU seconds from its first message to its exit (startup left out)."""
    return [r["cpu_s"] - r["cpu_first_s"] for r in run.results
            if r.get("cpu_s") is not None and r.get("cpu_first_s") is not None]


def log_step_cpu(run: ProcessRun) -> None:
    """Each process' CPU seconds and calls per step (`--step-cpu`), and the other counts."""
    steps = sorted({step for r in run.results for step in r.get("steps", {})})
    for step in steps:
        cells = []
        for result in run.results:
            entry = result.get("steps", {}).get(step, {})
            extra = " ".join(f"{k}={v}" for k, v in entry.items() if k not in ("cpu_s", "calls"))
            cells.append(f"{entry.get('cpu_s', 0.0):6.2f} s {entry.get('calls', 0):5} calls"
                         + (f" ({extra})" if extra else ""))
        log(f"  {step:<20} " + " | ".join(cells))


def measure_flows(info: BrokerInfo, topic: str, partitions: int, traffic: Traffic, *, runs: int,
                  workdir: Path, modes: list[tuple[str, int]]) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    labels = {("consume", 1): "consume-only (Bytewax, 1p)", ("decode", 1): "bytewax decode (1p)",
              ("e2e", 1): "end-to-end 1 process", ("e2e", 2): "end-to-end 2 processes"}
    for mode, processes in modes:
        name = labels[(mode, processes)]
        rate = figures[name] = Figure(name, "spans/s")
        startup = figures[name + " startup"] = Figure(name + " startup", "s",
                                                      note="process start -> first message")
        end_cost = figures[name + " tail"] = Figure(
            name + " tail", "s", note="last message read -> run ended (processing what was read: "
            "the source reads each partition in a batch or two; EOF close-out; exit)")
        split: list[str] = []
        busiest = Figure(name + " CPU", "s", note="busiest process, first message -> exit")
        summed = Figure(name + " CPU sum", "s", note="all processes, first message -> exit")
        cpu_splits: list[str] = []
        for run_index in range(runs):
            log(f"{name}: run {run_index + 1}/{runs}")
            run = run_flow(info, topic, partitions, mode, processes, workdir)
            assert isinstance(run, ProcessRun)
            if run.messages != len(traffic.messages):
                raise RuntimeError(f"{name}: read {run.messages} of {len(traffic.messages)} "
                                   "messages")
            rate.values.append(throughput(run, traffic.spans))
            startup.values.append(run.first - run.spawn)
            end_cost.values.append(run.end - run.last)
            split.append("/".join(str(r["messages"]) for r in run.results))
            cpu = work_cpu(run)
            if mode == "e2e" and cpu:
                # The busiest process bounds the run on free cores; the wall clock of a shared
                # machine does not (other load), the CPU split also tells imbalance (one process
                # far busier) from overhead (the sum above one process' figure).
                busiest.values.append(max(cpu))
                summed.values.append(sum(cpu))
                cpu_splits.append("/".join(f"{c:.1f}" for c in cpu))
            log(f"{name}: CPU s per process after its first message: "
                f"{', '.join(f'{c:.2f}' for c in cpu)}")
            if STEP_CPU:
                log_step_cpu(run)
        if mode == "consume":
            msgs = figures["consume-only messages/s"] = Figure("consume-only (Bytewax, 1p)",
                                                              "msgs/s")
            msgs.values = [v * len(traffic.messages) / traffic.spans for v in rate.values]
        if busiest.values:
            figures[busiest.name] = busiest
            if processes > 1:
                busiest.note += f"; per process: {', '.join(cpu_splits)}"
                figures[summed.name] = summed
        if processes > 1:
            rate.note = f"messages per process: {', '.join(split)}"
    return figures


def measure_backtest(traffic: Traffic, runs: int, workdir: Path) -> Figure:
    from ingest.recorded import write_proto_messages  # noqa: PLC0415
    from rules.load import load_rules  # noqa: PLC0415
    from spanwatch.backtest import backtest  # noqa: PLC0415
    from spanwatch.settings import Settings  # noqa: PLC0415

    path = workdir / "recorded.otlp"
    write_proto_messages(path, [m.value for m in traffic.messages])
    rules = load_rules(ROOT / "alerts.toml")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    figure = Figure("backtest from file", "spans/s",
                    note=f"{path.stat().st_size / 1e6:.1f} MB protobuf file")
    for run_index in range(runs):
        log(f"backtest: run {run_index + 1}/{runs}")
        gc.collect()
        started = time.perf_counter()
        backtest([path], rules, settings)
        figure.values.append(traffic.spans / (time.perf_counter() - started))
    return figure


# --- latency --------------------------------------------------------------------------------------


LATENCY_RULES = ("error-rate-high", "provider-error-rate-high")


def measure_latency(info: BrokerInfo, workdir: Path, *, speed_before: float, speed_live: float,
                    rate: float, runs: int) -> dict[str, Figure]:
    """Time from "the breaching minute may close" to the notifier call, for an injected incident.

    Traffic: 6 services at `rate` spans/s of event time; from minute 2, 35% of support calls of
    svc-0 / gpt-4o-mini fail with provider rate limits. `error-rate-high` (5-minute error rate
    > 5% for 5 minutes, tier 1) then fires at the close of minute 7 (`provider-error-rate-high`
    may fire with it and inhibit it: whichever of the two is notified first counts). The real
    flow runs live (`tail=True`, 2 partitions) while the traffic is published on a schedule:
    event time runs `speed_before` times faster than wall time until one minute before the
    breaching minute ends, then `speed_live` times (1 = real time).

    With E the end of the breaching minute (the `at` of the firing event) and the close
    instant C = E + assembly wait + allowed lateness (the earliest the minute may close), the
    figure reported is the real-time equivalent of "notifier call - C":

        latency = (routing time of the notification - E)      event time: group_wait, plus
                                                                how far the window watermark
                                                                moves per source batch (window
                                                                shards tick routing whenever
                                                                it moves)
                + processing lag                              wall time: notifier call - when
                                                                the message that moved the
                                                                watermark there was acked

    which holds at any `speed_live`; at speed_live=1 "notifier call - wall time C was
    published" is also measured directly (`direct`).
    """
    from spanwatch.settings import Settings  # noqa: PLC0415

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    hold_ns = int((settings.ingest.assembly_wait_s + settings.allowed_lateness.total_seconds())
                  * SECOND_NS)
    figures = {name: Figure(name, "s", note=note) for name, note in (
        ("latency after close", "real-time equivalent, target <= 10 s"),
        ("  grouping delay (event time)", "routing time of notification - breaching minute end"),
        ("  processing lag (wall)", "notifier call - ack of the message that allowed it"),
        ("  direct (speed 1 only)", "notifier call - wall time the close was possible"),
        ("event -> notification", "breaching minute end -> notifier call (real-time equivalent)"),
    )}
    for run_index in range(runs):
        log(f"latency: run {run_index + 1}/{runs} (speed {speed_before:g}x, then "
            f"{speed_live:g}x around the breaching minute)")
        found = _latency_run(info, workdir, run_index, speed_before=speed_before,
                             speed_live=speed_live, rate=rate)
        if found is None:
            continue
        notify, bucket_end, published, start = found
        trigger_event = notify["at_unix_ns"] + hold_ns
        acked = _watermark_reached(published, trigger_event, partitions=2)
        if acked is None:
            log("latency: the message that allowed the notification was not found")
            continue
        lag = max(0.0, notify["t"] - acked)
        grouping = (notify["at_unix_ns"] - bucket_end) / SECOND_NS
        figures["latency after close"].values.append(grouping + lag)
        figures["  grouping delay (event time)"].values.append(grouping)
        figures["  processing lag (wall)"].values.append(lag)
        figures["event -> notification"].values.append(hold_ns / SECOND_NS + grouping + lag)
        if speed_live == 1:
            close_wall = _watermark_reached(published, bucket_end + hold_ns, partitions=2)
            if close_wall is not None:
                figures["  direct (speed 1 only)"].values.append(notify["t"] - close_wall)
        log(f"latency: {notify['rule']} fired at the close of minute "
            f"{(bucket_end - start) // MINUTE_NS - 1} of the traffic; notified at its end "
            f"+{grouping:.0f} s event time, lag {lag:.2f} s")
    return figures


def _latency_run(info: BrokerInfo, workdir: Path, run_index: int, *, speed_before: float,
                 speed_live: float, rate: float
                 ) -> tuple[dict[str, Any], int, list[Published], int] | None:
    """One live run: (notification, end of the breaching minute, acks, traffic start)."""
    start = (time.time_ns() // MINUTE_NS - 60) * MINUTE_NS  # minute aligned, an hour ago
    traffic = generate(int(rate * 12 * 60), start, rate, services=6, seed=100 + run_index,
                       spans_per_message=60, incident_minute=2, incident_minutes=10)
    expected_end = start + 8 * MINUTE_NS  # breach from minute 2's close, for 5m -> minute 7
    switch = expected_end - MINUTE_NS
    topic = new_topic(info, "spanwatch-bench-live", 2)
    live = workdir / f"live-{run_index}.jsonl"
    live.touch()
    proc = run_flow(info, topic, 2, "e2e", 1, workdir, tail=True, live_file=live)
    assert isinstance(proc, subprocess.Popen)
    wall0 = time.time() + 3.0  # let the flow start (imports, metadata) first

    def schedule(index: int) -> float:
        ev = traffic.messages[index].max_end_unix_ns
        before = (min(ev, switch) - start) / SECOND_NS / speed_before
        after = max(0, ev - switch) / SECOND_NS / speed_live
        return wall0 + before + after

    stop = threading.Event()
    published: list[Published] = []

    def publisher_main() -> None:
        published.extend(publish(info, topic, traffic, 2, schedule=schedule, stop=stop))

    publisher = threading.Thread(target=publisher_main, daemon=True)
    publisher.start()
    notify: dict[str, Any] | None = None
    firings: dict[str, dict[str, Any]] = {}
    deadline = time.time() + 3 + 8 * 60 / speed_before + 5 * 60 / speed_live + 60
    try:
        while time.time() < deadline and notify is None:
            time.sleep(0.2)
            for text in live.read_text().splitlines():
                line = json.loads(text) if text.strip() else {}
                if line.get("rule") not in LATENCY_RULES:
                    continue
                if line["kind"] == "firing":
                    firings.setdefault(line["rule"], line)
                if line["kind"] == "notify" and line["firing"] and notify is None:
                    notify = line
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        publisher.join(timeout=30)
    if notify is None or notify["rule"] not in firings:
        log(f"latency: run {run_index + 1}: no notification (firing: {sorted(firings)}); "
            f"see the flow log in {workdir}")
        return None
    return notify, firings[notify["rule"]]["at_unix_ns"], published, start


def _watermark_reached(published: list[Published], event_unix_ns: int,
                       partitions: int) -> float | None:
    """Wall time every partition had a message with event time >= `event_unix_ns` acked."""
    times = []
    for partition in range(partitions):
        hit = [p.wall for p in published
               if p.partition == partition and p.max_end_unix_ns >= event_unix_ns]
        if not hit:
            return None
        times.append(min(hit))
    return max(times)


# --- memory ---------------------------------------------------------------------------------------


def templates(days: int) -> dict[float, bytes]:
    """Steady-state series snapshots (bench/memory_per_series.py: every minute closed, hours
    and days rolled up), one per traffic class; cached in bench/.cache by code version."""
    import bench.memory_per_series as mps  # noqa: PLC0415

    sources = [*sorted((ROOT / "metrics").glob("*.py")), ROOT / "bench/memory_per_series.py"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    cache = ROOT / "bench" / ".cache" / f"series-templates-{days}d-{digest}.pkl"
    if cache.exists():
        loaded: dict[float, bytes] = pickle.loads(cache.read_bytes())  # noqa: S301 - our file
        return loaded
    log(f"memory: building {days}-day series templates (cached in {cache.parent})")
    mps.DAYS = days
    states = {rate: pickle.dumps(mps.build_template(rate, seed=int(rate * 10))[0], protocol=5)
              for rate in mps.MIX}
    cache.parent.mkdir(exist_ok=True)
    cache.write_bytes(pickle.dumps(states, protocol=5))
    return states


def measure_memory(counts: list[int], runs: int, days: int, workdir: Path) -> dict[str, Figure]:
    """Peak RSS of a fresh process holding N active series of the window stage, restored from
    steady-state snapshots (as recovery restores them) in the traffic mix of
    bench/memory_per_series.py, minus the process' RSS before; per series."""
    states = templates(days)
    path = workdir / "templates.pkl"
    path.write_bytes(pickle.dumps(states, protocol=5))
    figures: dict[str, Figure] = {}
    points: dict[int, float] = {}
    available = _mem_available()
    for n in counts:
        name = f"peak RSS per series @ {n // 1000}k"
        figure = figures[name] = Figure(name, "KB")
        if points and available is not None:
            biggest = max(points)
            estimate = points[biggest] * n * 1024 * 1.3
            if estimate > 0.5 * available:
                figure.note = (f"skipped: ~{estimate / 2**30:.1f} GiB estimated, "
                               f"{available / 2**30:.1f} GiB available")
                log(f"memory: {figure.note}")
                continue
        for _ in range(runs if n < 100_000 else 1):
            log(f"memory: {n} series")
            out = subprocess.run([sys.executable, str(Path(__file__)), "--memory-worker",
                                  str(n), str(path)], capture_output=True, text=True,
                                 check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            result = json.loads(out.stdout.strip().splitlines()[-1])
            figure.values.append(result["peak_kb_per_series"])
        points[n] = figure.median or 0.0
    if len(points) >= 2:
        small, big = sorted(points)[-2:]
        slope = (points[big] * big - points[small] * small) / (big - small)
        figures["marginal KB per series"] = Figure(
            "marginal KB per series", "KB", [slope],
            note=f"peak RSS slope between {small // 1000}k and {big // 1000}k series")
    return figures


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def memory_worker(n: int, path: Path) -> None:
    import dataclasses  # noqa: PLC0415
    import random  # noqa: PLC0415
    from datetime import timedelta  # noqa: PLC0415

    from bench.memory_per_series import MIX  # noqa: PLC0415
    from metrics.windows import SeriesWindows, WindowConfig  # noqa: PLC0415

    states: dict[float, bytes] = pickle.loads(path.read_bytes())  # noqa: S301 - our file
    rng = random.Random(n)
    rates = rng.choices(list(MIX), weights=list(MIX.values()), k=n)
    config = WindowConfig(retire_after=timedelta(days=30))
    gc.collect()
    baseline = _status_kb("VmRSS")
    with contextlib.suppress(OSError):  # reset the peak (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    series: dict[Any, Any] = {}
    started = time.perf_counter()
    for i, rate in enumerate(rates):
        state = pickle.loads(states[rate])  # noqa: S301
        key = (("service", f"svc-{i % 97}"), ("model", f"model-{i}"))
        series[key] = SeriesWindows.restore(dataclasses.replace(state, key=key), config)
    gc.collect()
    peak = max(_status_kb("VmHWM"), _status_kb("VmRSS"))
    print(json.dumps({"series": n, "baseline_kb": baseline, "peak_kb": peak,
                      "peak_kb_per_series": (peak - baseline) / n,
                      "rss_kb_per_series": (_status_kb("VmRSS") - baseline) / n,
                      "restore_s": time.perf_counter() - started}))


# --- profile --------------------------------------------------------------------------------------


def profile_e2e(info: BrokerInfo, topic: str, partitions: int, workdir: Path) -> Path:
    """The e2e flow in this process under cProfile; prints the top functions."""
    import cProfile  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    from bytewax.testing import run_main  # noqa: PLC0415

    os.environ.update({"SPANWATCH_BENCH_BOOTSTRAP": info.bootstrap,
                       "SPANWATCH_BENCH_TOPIC": topic,
                       "SPANWATCH_BENCH_PARTITIONS": str(partitions),
                       "SPANWATCH_BENCH_EMBEDDED": "1" if info.is_embedded else "0",
                       "SPANWATCH_BENCH_MODE": "e2e", "SPANWATCH_BENCH_TAIL": "0"})
    import bench.flow_module as fm  # noqa: PLC0415

    flow = fm.make_flow()
    profiler = cProfile.Profile()
    profiler.enable()
    run_main(flow)  # type: ignore[no-untyped-call]
    profiler.disable()
    out = workdir / "e2e.pstats"
    profiler.dump_stats(out)
    stats = pstats.Stats(profiler, stream=sys.stdout)
    print("\n--- e2e profile (cProfile, 1 process, in-process run_main), by cumulative time ---")
    stats.sort_stats("cumulative").print_stats(35)
    print("--- by own time ---")
    stats.sort_stats("tottime").print_stats(25)
    return out


def profile_processes(info: BrokerInfo, topic: str, partitions: int, workdir: Path,  # noqa: PLR0917
                      processes: int, keep: Path | None = None) -> None:
    """The e2e flow in `processes` processes, each sampled by py-spy; prints each one's
    hotspots (1 process too: the same sampler on both sides of a 1p/2p comparison)."""
    for old in workdir.glob("e2e-*.stacks"):
        old.unlink()
    run = run_flow(info, topic, partitions, "e2e", processes, workdir, profile=True)
    assert isinstance(run, ProcessRun)
    for index, path in enumerate(sorted(workdir.glob("e2e-*.stacks"))):
        if keep is not None:  # for comparisons across runs (the workdir is deleted)
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, keep / f"e2e-{processes}p-{index}.stacks")
        own, total, samples = stack_summary(path.read_text())
        print(f"\n--- e2e, process {index} of {processes}: {samples} samples holding the GIL "
              "(py-spy) ---")
        print("  own %   total %  function")
        top = sorted(total, key=lambda name: -total[name])[:40]
        top += [name for name in sorted(own, key=lambda name: -own[name])[:25] if name not in top]
        for name in top:
            share_own, share_total = 100 * own.get(name, 0) / samples, 100 * total[name] / samples
            print(f"  {share_own:5.1f}   {share_total:6.1f}  {name}")


def stack_summary(collapsed: str) -> tuple[dict[str, int], dict[str, int], int]:
    """Samples per function from py-spy's raw (collapsed) stacks: as the innermost frame
    (own) and anywhere on the stack (total, once per sample); and the number of samples.
    Line numbers are dropped so a function is one entry."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = [_function_of(frame) for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for name in set(frames):
            total[name] = total.get(name, 0) + count
    return own, total, max(samples, 1)


def _function_of(frame: str) -> str:
    """`fold_plans (metrics/bucket.py:419)` -> `fold_plans (metrics/bucket.py)`."""
    head, colon, _ = frame.rpartition(":")
    return f"{head})" if colon else frame


def _py_spy() -> str:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("--profile-2p needs py-spy: .venv/bin/pip install -e '.[bench]'")
    return found


# --- main -----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="spanwatch performance bench",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N, 3 runs, < 2 minutes")
    parser.add_argument("--spans", type=int, help="spans to publish (default 60000; quick 5000)")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3)")
    parser.add_argument("--rate", type=float, default=500.0,
                        help="spans per second of event time in the traffic (default 500)")
    parser.add_argument("--services", type=int,
                        help="services (default 80: ~2,400 series; quick 40: ~1,100 series)")
    parser.add_argument("--partitions", type=int, default=4, help="topic partitions (4)")
    parser.add_argument("--series", type=int, nargs="+",
                        help="active series for the memory figure (default 1000 10000 100000; "
                             "quick 1000 10000)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["decode", "flows", "consume", "2p", "latency", "memory",
                                 "backtest"],
                        help="parts to leave out (consume: the consume-only and Bytewax decode "
                             "flows, keeping end-to-end)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the e2e flow in-process (cProfile) and print hotspots")
    parser.add_argument("--profile-2p", action="store_true",
                        help="also profile each process of the 2-process e2e flow")
    parser.add_argument("--profile-1p", action="store_true",
                        help="also profile the 1-process e2e flow as --profile-2p does (py-spy)")
    parser.add_argument("--profile-out", type=Path,
                        help="copy the py-spy stacks of --profile-1p/-2p to this directory")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--memory-worker", nargs=2, metavar=("N", "FILE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--step-cpu", action="store_true",
                        help="time each step of the e2e flow in its process and log it per run")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    global STEP_CPU  # noqa: PLW0603 - a run-wide switch read where the processes start
    STEP_CPU = args.step_cpu
    if args.memory_worker:
        memory_worker(int(args.memory_worker[0]), Path(args.memory_worker[1]))
        return 0

    quick = args.quick
    spans = args.spans or (5000 if quick else 60000)
    runs = args.runs or 3
    args.services = args.services or (40 if quick else 80)
    series_counts = args.series or ([1000, 10000] if quick else [1000, 10000, 100000])
    started = time.monotonic()
    figures: dict[str, Figure] = {}
    info_machine = machine()
    log(f"machine: {info_machine}")

    start_ns = (time.time_ns() // MINUTE_NS - 180) * MINUTE_NS
    traffic = generate(spans, start_ns, args.rate, services=args.services)
    series = count_series(traffic)
    log(f"traffic: {traffic.spans} spans in {len(traffic.messages)} messages "
        f"({sum(len(m.value) for m in traffic.messages) / 1e6:.1f} MB), "
        f"{traffic.minutes} min of event time at {args.rate:g} spans/s, {series} series")

    with tempfile.TemporaryDirectory(prefix="spanwatch-bench-") as tmp, broker() as info:
        workdir = Path(tmp)
        log(f"broker: {info.bootstrap} ({'embedded tansu' if info.is_embedded else 'Kafka'})")
        if "decode" not in args.skip:
            figures["decode"] = measure_decode(traffic, runs)
        topic = new_topic(info, "spanwatch-bench", args.partitions)
        publish(info, topic, traffic, args.partitions)
        if "flows" not in args.skip:
            modes = [("consume", 1), ("e2e", 1)] if quick else [
                ("consume", 1), ("decode", 1), ("e2e", 1)]
            if "consume" in args.skip:
                modes = [mode for mode in modes if mode[0] == "e2e"]
            if "2p" not in args.skip:
                modes.append(("e2e", 2))
            figures.update(measure_flows(info, topic, args.partitions, traffic, runs=runs,
                                         workdir=workdir, modes=modes))
        if "latency" not in args.skip:
            figures.update(measure_latency(
                info, workdir, speed_before=240.0 if quick else 30.0,
                speed_live=30.0 if quick else 1.0, rate=8.0, runs=1))
        if "memory" not in args.skip:
            figures.update(measure_memory(series_counts, 1 if quick else 3, 1 if quick else 8,
                                          workdir))
        if "backtest" not in args.skip:
            figures["backtest"] = measure_backtest(traffic, runs, workdir)
        profiles(args, info, topic, workdir)

    report(figures, traffic, series, args, runs=runs, info_machine=info_machine,
           seconds=time.monotonic() - started)
    return 0


def profiles(args: argparse.Namespace, info: BrokerInfo, topic: str, workdir: Path) -> None:
    if args.profile:
        profile_e2e(info, topic, args.partitions, workdir)
    if args.profile_1p:
        profile_processes(info, topic, args.partitions, workdir, 1, args.profile_out)
    if args.profile_2p:
        profile_processes(info, topic, args.partitions, workdir, 2, args.profile_out)


def count_series(traffic: Traffic) -> int:
    """Distinct (rule family, series) pairs the traffic creates under the shipped rules."""
    from ingest.decode import Decoder, SourceMessage  # noqa: PLC0415
    from rules.families import families  # noqa: PLC0415
    from rules.load import load_rules  # noqa: PLC0415
    from spanwatch.settings import Settings  # noqa: PLC0415

    decoder = Decoder(Settings(_env_file=None).ingest)  # type: ignore[call-arg]
    fams = families(load_rules(ROOT / "alerts.toml"))
    seen: set[Any] = set()
    for i, message in enumerate(traffic.messages[:: max(1, len(traffic.messages) // 400)]):
        decoded = decoder.decode(SourceMessage("bench", 0, i, None, message.value))
        for record in getattr(decoded, "spans", ()):
            for family in fams:
                key = family.key_of(record)
                if key is not None:
                    seen.add((family, key))
    return len(seen)


def report(figures: dict[str, Figure], traffic: Traffic, series: int, args: argparse.Namespace,
           *, runs: int, info_machine: dict[str, str], seconds: float) -> None:
    def med(key: str) -> float | None:
        figure = figures.get(key)
        return figure.median if figure else None

    decode = med("decode")
    e2e1 = med("end-to-end 1 process")
    e2e2 = med("end-to-end 2 processes")
    ratio = e2e1 / decode if e2e1 and decode else None
    scale = e2e2 / e2e1 if e2e1 and e2e2 else None
    cpu1, cpu2 = med("end-to-end 1 process CPU"), med("end-to-end 2 processes CPU")
    scale_cpu = cpu1 / cpu2 if cpu1 and cpu2 else None
    latency = med("latency after close")
    kb = med("marginal KB per series") or max(
        (f.median for k, f in figures.items() if k.startswith("peak RSS") and f.median),
        default=None)
    backtest = med("backtest")
    print(f"\nspanwatch bench ({'quick' if args.quick else 'full'}): {traffic.spans} spans, "
          f"{len(traffic.messages)} messages, {args.services} services, ~{series} series, "
          f"{args.rate:g} spans/s event time, {args.partitions} partitions, median of "
          f"{runs} runs [min - max], {seconds:.0f} s")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info_machine.items()))
    for figure in figures.values():
        print(figure.line())
    print("\nratios and targets:")
    rows = [
        ("end-to-end / decode-only (1p)", ratio, TARGETS["ratio_to_decode"], ">="),
        ("2 processes / 1 process", scale, TARGETS["scale_2p"], ">="),
        ("  by CPU (1p / busiest of 2p)", scale_cpu, TARGETS["scale_2p"], ">="),
        ("decode-only spans/s per core", decode, TARGETS["decode_per_core"], ">="),
        ("latency after close (s)", latency, TARGETS["latency_s"], "<="),
        ("KB per active series", kb, TARGETS["kb_per_series"], "<="),
        ("backtest spans/s", backtest, TARGETS["backtest"], ">="),
    ]
    for label, value, target, op in rows:
        verdict = "-" if value is None else (
            "met" if (value >= target if op == ">=" else value <= target) else "MISSED")
        print(f"  {label:<34} {_fmt(value):>12}   target {op} {_fmt(target):<8} {verdict}")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info_machine, "spans": traffic.spans, "messages": len(traffic.messages),
            "series": series, "rate": args.rate, "services": args.services, "runs": runs,
            "figures": {k: f.as_json() for k, f in figures.items()},
            "ratio_to_decode": ratio, "scale_2p": scale, "scale_2p_cpu": scale_cpu}, indent=2))
    print(f"spans_per_s={_plain(e2e1)} ratio_to_decode={_plain(ratio, 3)} "
          f"scale_2p={_plain(scale, 2)} latency_s={_plain(latency, 1)} "
          f"kb_per_series={_plain(kb, 1)}")


def _plain(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "nan"
    return f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())

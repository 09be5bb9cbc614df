"""Load benchmark of the run API under daphne and uvicorn, against the scripted model server.

    .venv/bin/python bench/run.py --servers daphne,uvicorn,agno   # ours against agno (~6 minutes)
    .venv/bin/python bench/run.py            # ours only: ~4 minutes on a 2-core box
    .venv/bin/python bench/run.py --quick    # ~1 minute, noisier
    .venv/bin/python bench/run.py --profile  # also profile daphne (py-spy) at 8 clients

Everything runs on loopback in a throwaway directory (SQLite database, logs), every child process
is stopped on exit (also on Ctrl-C, errors and the overall time limit), and the results go to
bench/results/<timestamp>.json and .md. The servers of a run are all started up front and take
turns on every scenario (interleaved); with agno among them the report opens with the ratio table
ours / agno of performance issue 22. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime as dt
import json
import math
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
import profile_summary  # noqa: E402

PY = sys.executable
VENV_BIN = Path(sys.executable).parent
RESULTS = BENCH / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"

# PERFORMANCE.md: (key, figure, target, agno AgentOS 3.1.10 on the reference box, passes(value))
TARGETS: list[tuple[str, str, str, str, Any]] = [
    ("rps_ns_8", "non-streaming runs/s at 8 clients", ">= 225", "113", lambda v: v >= 225),
    ("cpu_ns", "server CPU per non-streaming run (8 clients)", "<= 4 ms", "8.6 ms", lambda v: v <= 4),
    ("p99_ns_32", "p99 latency at 32 clients, non-streaming", "<= 200 ms", "397 ms", lambda v: v <= 200),
    ("rps_st_8", "streamed runs/s (50 words) at 8 clients", ">= 100", "43", lambda v: v >= 100),
    ("cpu_st", "server CPU per streamed run (8 clients)", "<= 8 ms", "22.8 ms", lambda v: v <= 8),
    ("ttfc_1", "time to first content frame, 1 client, p50", "<= 3 ms", "6.9 ms", lambda v: v <= 3),
    ("rss_idle", "server memory idle (MiB)", "<= 128", "128", lambda v: v <= 128),
    ("rss_after", "server memory after load (MiB)", "<= 155", "155", lambda v: v <= 155),
]


# ---- processes ---------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the benchmark itself dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Processes:
    """Every child the benchmark starts, each in its own process group, stopped by `stop_all`."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
        with log.open("ab") as sink:
            kw.setdefault("stdout", sink)
            kw.setdefault("cwd", ROOT)
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stderr=sink,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # the benchmark runs no threads, so this is safe
                **kw,
            )
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 8.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def stop_all(self) -> None:
        for _name, proc in reversed(list(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def proc_cpu(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def box_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_ready(url: str, headers: dict[str, str], proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
                if r.status == 200:
                    return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"server not ready after {timeout} s ({last}):\n{tail(log)}")


def wait_quiet(limit: float, threshold: float = 0.25) -> float:
    """Wait (up to `limit` s) until the box is nearly idle: other work skews every figure.

    Returns the cores busy in the last 1-second sample."""
    deadline = time.monotonic() + limit
    cores = os.cpu_count() or 1
    announced = False
    while True:
        b0, t0 = box_cpu()
        time.sleep(1.0)
        b1, t1 = box_cpu()
        busy = (b1 - b0) / max(1, t1 - t0) * cores
        if busy <= threshold or time.monotonic() >= deadline:
            if announced:
                log(f"box {'quiet' if busy <= threshold else 'still busy'}: {busy:.2f} cores busy")
            return round(busy, 2)
        if not announced:
            log(f"waiting up to {limit:.0f} s for other work on the box to end ({busy:.2f} cores busy)")
            announced = True


# ---- statistics --------------------------------------------------------------------------------


def pctl(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def scenario(
    *,
    label: str,
    port: int,
    clients: int,
    duration: float,
    loop: loadgen.ClientLoop,
    server_pid: int,
    model_pid: int | None,
    transport: str = "raw",
) -> dict[str, Any]:
    marks: dict[str, Any] = {}
    load_before = loadavg()["1m"]

    def on_start() -> None:
        marks["server"] = proc_cpu(server_pid)
        marks["model"] = proc_cpu(model_pid) if model_pid else 0.0
        marks["client"] = time.process_time()
        marks["box"] = box_cpu()

    result = asyncio.run(
        loadgen.run_clients(
            host=HOST,
            port=port,
            clients=clients,
            duration=duration,
            loop_factory=loop,
            transport=transport,
            on_start=on_start,
        )
    )
    server_cpu = proc_cpu(server_pid) - marks["server"]
    model_cpu = (proc_cpu(model_pid) - marks["model"]) if model_pid else 0.0
    client_cpu = time.process_time() - marks["client"]
    busy1, total1 = box_cpu()
    box_busy = (busy1 - marks["box"][0]) / max(1, total1 - marks["box"][1])
    # CPU used by anything but the server, the model server and this client (in cores): other
    # work on the box distorts throughput and latency; the per-run CPU figures are less affected.
    others = (busy1 - marks["box"][0]) / CLK_TCK - server_cpu - model_cpu - client_cpu

    ok = [s for s in result.samples if s.ok]
    lat = sorted(s.latency for s in ok)
    ttfc = sorted(s.ttfc for s in ok if s.ttfc is not None)
    runs = len(result.samples)
    per = max(1, len(ok))
    return {
        "label": label,
        "clients": clients,
        "transport": transport,
        "runs": runs,
        "ok": len(ok),
        "errors": runs - len(ok),
        "error_kinds": result.errors,
        "wall_s": round(result.wall, 3),
        "runs_per_s": round(len(ok) / result.wall, 1) if result.wall else 0.0,
        "p50_ms": ms(pctl(lat, 50)),
        "p90_ms": ms(pctl(lat, 90)),
        "p99_ms": ms(pctl(lat, 99)),
        "max_ms": ms(lat[-1] if lat else None),
        "ttfc_p50_ms": ms(pctl(ttfc, 50)),
        "ttfc_p90_ms": ms(pctl(ttfc, 90)),
        "server_cpu_ms_per_run": round(server_cpu / per * 1000, 2),
        "model_cpu_ms_per_run": round(model_cpu / per * 1000, 2),
        "client_cpu_ms_per_run": round(client_cpu / per * 1000, 2),
        "server_cpu_util": round(server_cpu / result.wall, 2) if result.wall else None,
        "client_cpu_util": round(client_cpu / result.wall, 2) if result.wall else None,
        "box_cpu_busy": round(box_busy, 2),
        "other_cpu_cores": round(max(0.0, others) / result.wall, 2) if result.wall else None,
        "loadavg_1m": load_before,
    }


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def log_scenario(r: dict[str, Any]) -> None:
    extra = f", TTFC p50 {r['ttfc_p50_ms']} ms" if r.get("ttfc_p50_ms") is not None else ""
    if r.get("loadavg_1m") is not None:
        extra += f", load avg {r['loadavg_1m']}"
    if (r.get("other_cpu_cores") or 0) > 0.2:
        extra += f", BACKGROUND LOAD {r['other_cpu_cores']} cores"
    log(
        f"  {r['label']:<34} {r['clients']:>2} clients: {r['runs_per_s']:>7} runs/s, p50 {r['p50_ms']} / "
        f"p99 {r['p99_ms']} ms, errors {r['errors']}, server CPU {r['server_cpu_ms_per_run']} ms/run{extra}"
    )


# ---- phases ------------------------------------------------------------------------------------


def django_env(db_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("REDIS_URL", None)  # the embedded single-process mode: in-memory channel layer
    env.update(
        DATABASE_URL=db_url,
        DJANGO_SETTINGS_MODULE="agentos_site.settings",
        DJANGO_DEBUG="false",
        DJANGO_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


SITE_APP = "agentos_site.asgi:application"
# "<server>+shared": the experiment in bench/asgi_shared_thread.py (one long-lived sync thread).
APPS = {"": SITE_APP, "shared": "bench.asgi_shared_thread:application"}


def is_agno(kind: str) -> bool:
    return kind.partition("@")[0] == "agno"


def server_env(kind: str, env: dict[str, str]) -> dict[str, str]:
    """`env` for a server kind of ours: "uvicorn@1" pins itself with AGENTOS_CPU_AFFINITY=1, the
    production setting (docs/deployment.md#one-cpu-per-process)."""
    cpus = kind.partition("@")[2]
    return {**env, "AGENTOS_CPU_AFFINITY": cpus} if cpus and not is_agno(kind) else env


def server_argv(kind: str, port: int, access_log: bool) -> list[str]:
    """The command of a server kind: "uvicorn", "daphne", "agno", "<server>+<variant>" (APPS), each
    optionally "@<cpus>", the process and all its threads pinned to one of those CPUs: agno's under
    `taskset -c <cpus>`, ours by its own setting (AGENTOS_CPU_AFFINITY, `server_env`)."""
    kind, _, cpus = kind.partition("@")
    if cpus and kind == "agno":
        return ["taskset", "-c", cpus, *server_argv(kind, port, access_log)]
    if kind == "agno":  # agno's AgentOS (bench/agno_app.py) under uvicorn, as agno serves it
        argv = [str(VENV_BIN / "uvicorn"), "bench.agno_app:app", "--host", HOST, "--port", str(port)]
        argv += ["--log-level", "warning"]
        return argv if access_log else [*argv, "--no-access-log"]
    server, _, variant = kind.partition("+")
    app = APPS[variant]
    if server == "daphne":
        argv = [str(VENV_BIN / "daphne"), "-b", HOST, "-p", str(port)]
        if not access_log:
            argv += ["-v", "0"]  # daphne's access log is on by default; uvicorn's is off below
        return [*argv, app]
    if server == "uvicorn":
        argv = [str(VENV_BIN / "uvicorn"), app, "--host", HOST, "--port", str(port)]
        argv += ["--log-level", "warning", "--lifespan", "off", "--ws", "wsproto", "--ws-per-message-deflate", "false"]
        return argv if access_log else [*argv, "--no-access-log"]
    raise ValueError(kind)


def start_model_server(procs: Processes, env: dict[str, str], tmp: Path, words: int) -> tuple[Any, int]:
    port = free_port()
    argv = [PY, "-m", "agents_app.testing.scripted_server", "--host", HOST, "--port", str(port)]
    proc = procs.start("model", [*argv, "--words", str(words)], env, tmp / "model.log", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline().decode().strip() if ready else ""
    if not line.startswith("http://"):
        raise RuntimeError(f"scripted model server did not start: {line!r}\n{tail(tmp / 'model.log')}")
    return proc, port


def step(argv: list[str], env: dict[str, str], timeout: float) -> str:
    """Run a Python step of the set-up; fail with its stderr."""
    proc = subprocess.run([PY, *argv], cwd=ROOT, env=env, timeout=timeout, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr.decode()[-2500:]}")
    return proc.stdout.decode()


def profile_pass(
    *,
    procs: Processes,
    env: dict[str, str],
    tmp: Path,
    stamp: str,
    kind: str,
    port: int,
    pid: int,
    model_pid: int,
    duration: float,
    setup: dict[str, Any],
    stream: bool,
    clients: int,
) -> dict[str, Any]:
    """Attach py-spy (all threads, on-CPU samples only) while the load runs; summarize."""
    py_spy = VENV_BIN / "py-spy"
    if not py_spy.exists():
        py_spy = Path(shutil.which("py-spy") or "py-spy")
    mode = "stream" if stream else "nonstream"
    out = RESULTS / f"{stamp}-{kind}-{mode}-{clients}.pyspy.txt"
    argv = [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(duration)), "--rate", "250"]
    argv += ["--nonblocking", "--threads", "--format", "raw", "-o", str(out)]
    spy = procs.start("py-spy", argv, env, tmp / "py-spy.log")
    time.sleep(0.7)  # let it attach
    r = scenario(
        label=f"{kind} {mode} (under py-spy)",
        port=port,
        clients=clients,
        duration=duration + 0.5,
        loop=loadgen.agent_loop(agent=setup["agent"], token=setup["token"], stream=stream),
        server_pid=pid,
        model_pid=model_pid,
    )
    try:
        spy.wait(20)
    except subprocess.TimeoutExpired:
        procs.stop(spy, signal.SIGINT)
    procs.stop(spy)
    if not out.exists():
        raise RuntimeError(f"py-spy wrote no profile:\n{tail(tmp / 'py-spy.log')}")
    summary = profile_summary.summarize(out)
    md = profile_summary.to_markdown(summary, title=f"{kind}, {mode}, {clients} clients", rows=15)
    (RESULTS / f"{stamp}-{kind}-{mode}-{clients}.pyspy.md").write_text(md)
    return {"scenario": r, "summary": summary, "markdown": md}


def loadavg() -> dict[str, float]:
    """The kernel's load averages (1, 5 and 15 minutes): how busy the box was around a scenario.

    Our own load counts too (the previous scenario's server, model server and client), so it is a
    drift indicator to compare between rows, not a measure of other work (that is "other load")."""
    with open("/proc/loadavg") as f:
        one, five, fifteen = (float(v) for v in f.read().split()[:3])
    return {"1m": one, "5m": five, "15m": fifteen}


class Server:
    """One server of the run: its process, started up front and kept until every scenario ran."""

    def __init__(self, *, kind: str, env: dict[str, str], tmp: Path, setup: dict[str, Any], args: Any) -> None:
        self.kind = kind
        self.agno = is_agno(kind)
        self.port = free_port()
        self.log_path = tmp / f"{kind}.log"
        self.env = server_env(kind, env)
        if self.agno:
            self.env = {**env, "AGNO_BENCH_DB": str(tmp / "agno.sqlite3"), "AGNO_BENCH_MODEL_URL": setup["base_url"]}
            self.env["AGNO_TELEMETRY"] = "false"
        self.setup = setup
        self.argv = server_argv(kind, self.port, args.access_log)
        self.proc: subprocess.Popen[bytes] | None = None
        self.idle_cpu = self.idle_wall = 0.0  # CPU seconds and wall time while the others ran
        # What the report and the JSON keep for this server (the keys other scripts read).
        self.result: dict[str, Any] = {"server": kind, "argv": self.argv, "scenarios": [], "profiles": []}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, procs: Processes, quiet_wait: float) -> None:
        self.result["box_busy_before_cores"] = wait_quiet(quiet_wait)
        self.proc = procs.start(self.kind, self.argv, self.env, self.log_path)
        headers = {"Authorization": f"Bearer {self.setup['token']}"}
        t0 = time.monotonic()
        ready_url = f"http://{HOST}:{self.port}/health" if self.agno else f"http://{HOST}:{self.port}/api/agents/"
        wait_ready(ready_url, headers, self.proc, self.log_path, timeout=60)
        startup = time.monotonic() - t0
        time.sleep(0.5)
        mem_idle = proc_mem(self.pid)
        self.result.update(startup_s=round(startup, 2), rss_idle_mib=mem_idle["VmRSS"])
        log(f"{self.kind} ready on :{self.port} in {startup:.1f} s, RSS idle {mem_idle['VmRSS']} MiB")

    def make_loop(self, stream: bool) -> loadgen.ClientLoop:
        if self.agno:
            return loadgen.agno_loop(agent="bench", stream=stream)
        return loadgen.agent_loop(agent=self.setup["agent"], token=self.setup["token"], stream=stream)

    def warm_up(self, duration: float, model_pid: int) -> None:
        """Imports, connection pools, caches: both modes at 8 clients, not recorded."""
        for stream in (False, True):
            scenario(
                label="warm-up",
                port=self.port,
                clients=8,
                duration=duration,
                loop=self.make_loop(stream),
                server_pid=self.pid,
                model_pid=model_pid,
            )
        self.result["rss_after_warmup_mib"] = proc_mem(self.pid)["VmRSS"]

    def measure(self, *, stream: bool, clients: int, duration: float, model_pid: int, turn: int) -> dict[str, Any]:
        r = scenario(
            label=f"{self.kind} {'streaming' if stream else 'non-streaming'}",
            port=self.port,
            clients=clients,
            duration=duration,
            loop=self.make_loop(stream),
            server_pid=self.pid,
            model_pid=model_pid,
        )
        r["stream"] = stream
        r["turn"] = turn  # 0: this server went first in this scenario
        self.result["scenarios"].append(r)
        log_scenario(r)
        self.check_alive()
        return r

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} died:\n{tail(self.log_path)}")

    def read_rss_after_load(self) -> None:
        mem = proc_mem(self.pid)
        self.result.update(rss_after_load_mib=mem["VmRSS"], rss_peak_mib=mem["VmHWM"])
        log(f"{self.kind} RSS after load {mem['VmRSS']} MiB (peak {mem['VmHWM']} MiB)")

    def profile(self, *, procs: Processes, tmp: Path, stamp: str, args: Any, model_pid: int) -> None:
        for stream in (False, True):
            log(f"profiling {self.kind} ({'streaming' if stream else 'non-streaming'}, 8 clients) with py-spy ...")
            p = profile_pass(
                procs=procs,
                env=self.env,
                tmp=tmp,
                stamp=stamp,
                kind=self.kind,
                port=self.port,
                pid=self.pid,
                model_pid=model_pid,
                duration=args.profile_duration,
                setup=self.setup,
                stream=stream,
                clients=8,
            )
            self.result["profiles"].append(p)
            log_scenario(p["scenario"])

    def stop(self, procs: Processes) -> None:
        if self.proc is None:
            return
        procs.stop(self.proc, signal.SIGINT if self.kind.startswith("uvicorn") or self.agno else signal.SIGTERM)
        self.result["log_tail"] = tail(self.log_path, 15)


def run_servers(
    *,
    kinds: list[str],
    procs: Processes,
    env: dict[str, str],
    tmp: Path,
    args: argparse.Namespace,
    setup: dict[str, Any],
    model_pid: int,
    stamp: str,
    report: dict[str, Any],
) -> None:
    """Every server up front, then each scenario (mode x clients) once per server, taking turns.

    Side by side in time, the slow drift of a shared box (other jobs, thermal, the page cache)
    weighs on every server alike; the order rotates per scenario so that no server always runs
    first (or always right after another one's heaviest scenario)."""
    servers = [Server(kind=kind, env=env, tmp=tmp, setup=setup, args=args) for kind in kinds]
    try:
        for s in servers:
            report["servers"].append(s.result)  # partial results survive an abort
            s.start(procs, args.quiet_wait)
            s.warm_up(args.warmup, model_pid)
        plan = [(stream, clients) for stream in (False, True) for clients in args.clients]
        for i, (stream, clients) in enumerate(plan):
            order = servers[i % len(servers) :] + servers[: i % len(servers)]
            log(
                f"scenario {i + 1}/{len(plan)}: {'streaming' if stream else 'non-streaming'}, {clients} clients; "
                f"order {', '.join(s.kind for s in order)}"
            )
            for s in servers:
                s.check_alive()
            for turn, s in enumerate(order):
                waiting = [w for w in servers if w is not s]
                cpu0, t0 = [proc_cpu(w.pid) for w in waiting], time.monotonic()
                s.measure(stream=stream, clients=clients, duration=args.duration, model_pid=model_pid, turn=turn)
                for w, c0 in zip(waiting, cpu0, strict=True):
                    w.idle_cpu += proc_cpu(w.pid) - c0
                    w.idle_wall += time.monotonic() - t0
        for s in servers:
            s.read_rss_after_load()
            if s.idle_wall:
                # CPU while the other servers had their turn: part of their "other load" column.
                s.result["idle_cpu_cores_while_waiting"] = round(s.idle_cpu / s.idle_wall, 3)
                log(f"{s.kind} used {s.result['idle_cpu_cores_while_waiting']} cores while the others ran")
        if args.profile:
            for s in servers:
                if s.kind in args.profile_servers:
                    s.profile(procs=procs, tmp=tmp, stamp=stamp, args=args, model_pid=model_pid)
    finally:
        for s in servers:
            with contextlib.suppress(Exception):
                s.stop(procs)
        for s in servers:  # the per-server tables list the scenarios in their usual order
            s.result["scenarios"].sort(key=lambda r: (r["stream"], args.clients.index(r["clients"])))


# ---- report ------------------------------------------------------------------------------------


def fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def scenario_table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| scenario | clients | runs | runs/s | p50 ms | p90 ms | p99 ms | errors | server CPU ms/run "
        "| model CPU ms/run | client CPU ms/run | box CPU busy | other load (cores) | TTFC p50 ms | load avg 1m |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        out.append(
            f"| {r['label']} | {r['clients']} | {r['runs']} | {r['runs_per_s']} | {fmt(r['p50_ms'])} | "
            f"{fmt(r['p90_ms'])} | {fmt(r['p99_ms'])} | {r['errors']} | {r['server_cpu_ms_per_run']} | "
            f"{r['model_cpu_ms_per_run']} | {r['client_cpu_ms_per_run']} | {int(r['box_cpu_busy'] * 100)}% | "
            f"{fmt(r.get('other_cpu_cores'))}{' ⚠' if (r.get('other_cpu_cores') or 0) > 0.2 else ''} | "
            f"{fmt(r['ttfc_p50_ms'])} | {fmt(r.get('loadavg_1m'))} |"
        )
    return "\n".join(out)


def figures(server: dict[str, Any]) -> dict[str, Any]:
    def find(stream: bool, clients: int) -> dict[str, Any] | None:
        for r in server["scenarios"]:
            if r["stream"] == stream and r["clients"] == clients:
                return r
        return None

    ns8, ns32, st8, st1 = find(False, 8), find(False, 32), find(True, 8), find(True, 1)
    return {
        "rps_ns_8": ns8 and ns8["runs_per_s"],
        "cpu_ns": ns8 and ns8["server_cpu_ms_per_run"],
        "p99_ns_32": ns32 and ns32["p99_ms"],
        "rps_st_8": st8 and st8["runs_per_s"],
        "cpu_st": st8 and st8["server_cpu_ms_per_run"],
        "ttfc_1": st1 and st1["ttfc_p50_ms"],
        "rss_idle": server.get("rss_idle_mib"),
        "rss_after": server.get("rss_after_load_mib"),
    }


def targets_table(servers: list[dict[str, Any]], queries: dict[str, Any] | None) -> str:
    names = [s["server"] for s in servers]
    head = "| figure | agno (PERFORMANCE.md) | target | " + " | ".join(names) + " |"
    out = [head, "|---|--:|--:|" + "--:|" * len(names)]
    figs = [figures(s) for s in servers]
    for key, label, target, agno, passes in TARGETS:
        cells = []
        for f in figs:
            v = f.get(key)
            cells.append("-" if v is None else f"{v} {'✅' if passes(v) else '❌'}")
        out.append(f"| {label} | {agno} | {target} | " + " | ".join(cells) + " |")
    if queries:
        for p in queries.get("paths", []):
            first, second, last, runs = p["run_1"], p["run_2"], p["last"], p["runs"]
            ok = max(first, last) <= 8 and second == last
            cell = f"{first} / {second} / {last} {'✅' if ok else '❌'} (SQL only {p.get('sql_only_run_1')} / {p.get('sql_only_last')})"
            out.append(
                f"| DB queries per run 1 / 2 / {runs} of a session, {p['path']} | (rewrites the session) "
                f"| ≤ 8, constant | " + " | ".join([cell] + [""] * (len(names) - 1)) + " |"
            )
    return "\n".join(out)


# Issue 22's goals as ratios ours / agno, both measured in the same run (interleaved):
# (figure, goal text, goal, lower is better). The CPU rows hold at every concurrency of the run.
RATIO_GOALS: dict[str, tuple[str, str, float, bool]] = {
    "cpu_ns": ("server CPU per non-streaming run, {levels} clients", "≤ 0.45 at every level", 0.45, True),
    "cpu_st": ("server CPU per streamed {words}-word run, {levels} clients", "≤ 0.35 at every level", 0.35, True),
    "rps_ns_8": ("non-streaming runs/s at 8 clients", "≥ 2.0", 2.0, False),
    "rps_st_8": ("streamed runs/s at 8 clients", "≥ 3.0", 3.0, False),
    "ttfc_1": ("time to first content p50, 1 client", "≤ 0.5", 0.5, True),
    "p99_ns_32": ("p99 at 32 clients, non-streaming", "≤ 0.5", 0.5, True),
    "rss_after": ("RSS after load", "≤ 0.8", 0.8, True),
}
SQL_GOAL = 5  # SQL statements per run over HTTP (BEGIN/COMMIT left out), the same from run 2 on


def _row(server: dict[str, Any], stream: bool, clients: int) -> dict[str, Any] | None:
    for r in server["scenarios"]:
        if r["stream"] == stream and r["clients"] == clients:
            return r
    return None


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or not theirs:
        return None
    return round(ours / theirs, 2)


def _marked(value: float | None, key: str) -> str:
    if value is None:
        return "-"
    _label, _text, goal, lower = RATIO_GOALS[key]
    return f"{value} {'✅' if (value <= goal if lower else value >= goal) else '❌'}"


def ratios(ours: dict[str, Any], agno: dict[str, Any], levels: list[int]) -> dict[str, list[float | None]]:
    """Ours / agno for each figure of RATIO_GOALS (a list: one value per concurrency for the CPU rows)."""

    def scen(key: str, stream: bool, clients: int) -> float | None:
        a, b = _row(ours, stream, clients), _row(agno, stream, clients)
        return _ratio(a and a[key], b and b[key])

    cpu = "server_cpu_ms_per_run"
    return {
        "cpu_ns": [scen(cpu, False, c) for c in levels],
        "cpu_st": [scen(cpu, True, c) for c in levels],
        "rps_ns_8": [scen("runs_per_s", False, 8)],
        "rps_st_8": [scen("runs_per_s", True, 8)],
        "ttfc_1": [scen("ttfc_p50_ms", True, 1)],
        "p99_ns_32": [scen("p99_ms", False, 32)],
        "rss_after": [_ratio(ours.get("rss_after_load_mib"), agno.get("rss_after_load_mib"))],
    }


def ratios_vs_agno(report: dict[str, Any]) -> dict[str, dict[str, list[float | None]]] | None:
    """{server of ours: ratios(...)} when agno ran in the same run, else None (kept in the JSON)."""
    agnos = {s["server"].partition("@")[2]: s for s in report["servers"] if is_agno(s["server"])}
    ours = [s for s in report["servers"] if not is_agno(s["server"])]
    if not agnos or not ours:
        return None
    out = {}
    for s in ours:
        # Pinned against pinned: "uvicorn@1" is compared with "agno@1" when that ran too.
        cpus = s["server"].partition("@")[2]
        agno = agnos.get(cpus) or agnos.get("") or next(iter(agnos.values()))
        name = s["server"] if len(agnos) == 1 else f"{s['server']} / {agno['server']}"
        out[name] = ratios(s, agno, report["params"]["clients"])
    return out


def ratio_table(report: dict[str, Any]) -> str | None:
    """Issue 22's table: ours / agno per figure, one column per server of ours; None without agno."""
    by_server = ratios_vs_agno(report)
    if by_server is None:
        return None
    levels = report["params"]["clients"]
    per_server = list(by_server.values())
    out = [
        "| figure (ratio ours / agno) | " + " | ".join(f"ours, {name}" for name in by_server) + " | goal |",
        "|---|" + "--:|" * len(by_server) + "---|",
    ]
    for key, (label, text, _goal, _lower) in RATIO_GOALS.items():
        label = label.format(levels=" / ".join(str(c) for c in levels), words=report["params"]["words"])
        cells = [" / ".join(_marked(v, key) for v in r[key]) for r in per_server]
        out.append(f"| {label} | " + " | ".join(cells) + f" | {text} |")
    return "\n".join(out)


def absolute_table(report: dict[str, Any]) -> str:
    """Issue 22's absolute goals: SQL statements per HTTP run (bench/queries.py) and idle websockets."""
    sql = "- (run without --no-queries)"
    http = next((p for p in (report.get("queries") or {}).get("paths", []) if p["path"].startswith("HTTP")), None)
    if http is not None:
        second = http.get("sql_only_run_2")
        if second is None and http.get("sql_only_per_run"):
            second = http["sql_only_per_run"][1]
        last = http.get("sql_only_last")
        ok = second is not None and last is not None and second == last and last <= SQL_GOAL
        sql = (
            f"{fmt(second)} / {fmt(last)} {'✅' if ok else '❌'} (max over the session {fmt(http.get('sql_only_max'))})"
        )
    runs = http["runs"] if http else 100
    return "\n".join(
        [
            "| figure | ours | goal |",
            "|---|--:|---|",
            f"| SQL statements per run over HTTP, run 2 / run {runs} of a session (without BEGIN/COMMIT) "
            f"| {sql} | ≤ {SQL_GOAL}, constant |",
            "| idle websockets per GiB | see bench/ws_bench.py | ≥ 40,000 |",
        ]
    )


def render(report: dict[str, Any]) -> str:
    parts = [f"## AgentOS load benchmark, {report['started']}", ""]
    meta = report["meta"]
    parts.append(
        f"{meta['cpus']} CPUs ({meta['cpu_model']}), Python {meta['python']}, Django {meta['versions'].get('django')}, "
        f"daphne {meta['versions'].get('daphne')}, uvicorn {meta['versions'].get('uvicorn')}, "
        f"openai {meta['versions'].get('openai')}; SQLite; {report['params']['duration']} s per scenario; "
        f"model answers {report['params']['words']} words; history of 3 runs; load client: {report['params']['transport']}."
    )
    before, after = report.get("loadavg_before") or {}, report.get("loadavg_after") or {}
    parts.append(
        f"Load average (1 min): {fmt(before.get('1m'))} before the run, {fmt(after.get('1m'))} after the load "
        f"(5 min: {fmt(before.get('5m'))} / {fmt(after.get('5m'))}); servers "
        f"{'interleaved: every scenario runs on each server in turn, the order rotating' if len(report['servers']) > 1 else 'one server'}."
    )
    parts.append("")
    servers = report["servers"]
    table = ratio_table(report)
    if table:
        parts += ["### Ours / agno, measured side by side in this run (performance issue 22)", "", table, ""]
    parts += ["### Absolute goals (performance issue 22)", "", absolute_table(report), ""]
    if servers:
        parts += ["### Against PERFORMANCE.md", "", targets_table(servers, report.get("queries")), ""]
    elif report.get("queries"):
        parts += ["### Queries", "", targets_table([], report["queries"]), ""]
    if report.get("ceiling"):
        parts += ["### Ceiling: the scripted model server called directly", "", scenario_table(report["ceiling"]), ""]
    for s in servers:
        parts += [
            f"### {s['server']}",
            "",
            f"`{' '.join(s['argv'])}` — started in {fmt(s.get('startup_s'))} s; RSS idle {fmt(s.get('rss_idle_mib'))} MiB, "
            f"after warm-up {fmt(s.get('rss_after_warmup_mib'))} MiB, after load {fmt(s.get('rss_after_load_mib'))} MiB "
            f"(peak {fmt(s.get('rss_peak_mib'))} MiB)"
            + (
                f"; {s['idle_cpu_cores_while_waiting']} cores used while the other servers had their turn"
                if s.get("idle_cpu_cores_while_waiting") is not None
                else ""
            ),
            "",
            scenario_table(s["scenarios"]),
            "",
        ]
    if report.get("client_check"):
        parts += ["### Client check (scripted model server, 8 clients, non-streaming)", ""]
        parts += [scenario_table(report["client_check"]), ""]
    if report.get("queries"):
        parts += ["### Database queries per run (in-process, one session)", ""]
        parts += [
            "Counted with CaptureQueriesContext (as assertNumQueries does: BEGIN and COMMIT included); "
            "the SQL-only column leaves out BEGIN/COMMIT. The occasional +1 is the agent cache "
            "(AGENT_CACHE_SECONDS) expiring mid-session.",
            "",
            "| path | run 1 | run 2 | last run | min-max over the session | SQL only, run 1 / 2 / last | statements (last run) |",
            "|---|--:|--:|--:|--:|--:|---|",
        ]
        for p in report["queries"]["paths"]:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(p["kinds_last"].items()))
            parts.append(
                f"| {p['path']} | {p['run_1']} | {p['run_2']} | {p['last']} (run {p['runs']}) | "
                f"{p['min']}-{p['max']} | {p.get('sql_only_run_1')} / {fmt(p.get('sql_only_run_2'))} / {p.get('sql_only_last')} | {kinds} |"
            )
        parts.append("")
    for s in servers:
        for p in s.get("profiles", []):
            parts += ["### Profile", "", p["markdown"]]
    return "\n".join(parts)


# ---- main --------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {}
    for name in (
        "django",
        "daphne",
        "uvicorn",
        "twisted",
        "openai",
        "httpx",
        "djangorestframework",
        "channels",
        "agno",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, timeout=5)
        return out.stdout.decode().strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Load benchmark of the run API (see bench/README.md).")
    p.add_argument("--quick", action="store_true", help="short scenarios (~1 minute in all)")
    p.add_argument("--duration", type=float, help="seconds per server scenario (default 10, quick 3)")
    p.add_argument("--ceiling-duration", type=float, help="seconds per ceiling scenario (default 5, quick 2)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up per mode and server (default 1.5, quick 1)")
    p.add_argument("--clients", default="1,8,32", help="concurrencies, comma-separated")
    p.add_argument(
        "--servers",
        default="daphne,uvicorn",
        help="comma-separated: daphne, uvicorn, agno (agno's AgentOS, bench/agno_app.py, for comparison), "
        "and the experiment daphne+shared / uvicorn+shared; any of them with @<cpus> runs under `taskset -c <cpus>` "
        "(uvicorn@1,agno@1: both pinned to CPU 1)",
    )
    p.add_argument("--words", type=int, default=50, help="words per model answer")
    p.add_argument("--transport", choices=["raw", "httpx"], default="raw", help="load client transport")
    p.add_argument("--no-ceiling", action="store_true", help="skip the scripted-server ceiling")
    p.add_argument("--no-queries", action="store_true", help="skip the in-process query count")
    p.add_argument("--no-client-check", action="store_true", help="skip the raw-vs-httpx client check")
    p.add_argument("--profile", action="store_true", help="profile the server with py-spy at 8 clients")
    p.add_argument("--profile-servers", default="daphne", help="which servers --profile covers (default daphne)")
    p.add_argument("--profile-duration", type=float, help="seconds per profile (default 10, quick 4)")
    p.add_argument("--access-log", action="store_true", help="leave the servers' access logs on")
    p.add_argument("--quiet-wait", type=float, default=20, help="max seconds to wait for an idle box per phase")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (database, logs)")
    p.add_argument("--max-seconds", type=float, default=900, help="hard limit on the whole run")
    args = p.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (3.0 if quick else 10.0)
    args.ceiling_duration = args.ceiling_duration or (2.0 if quick else 5.0)
    args.warmup = args.warmup or (1.0 if quick else 1.5)
    args.profile_duration = args.profile_duration or (4.0 if quick else 10.0)
    args.clients = [int(c) for c in args.clients.split(",") if c]
    args.servers = [s for s in args.servers.split(",") if s]
    args.profile_servers = [s for s in args.profile_servers.split(",") if s]
    return args


def guard(max_seconds: float) -> None:
    """SIGTERM stops the benchmark as Ctrl-C does (children stopped, results so far written), and
    so does running past `max_seconds`."""

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def on_alarm(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"the benchmark exceeded --max-seconds={max_seconds}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(max_seconds))


def meta() -> dict[str, Any]:
    """What a report says about the machine and the code it measured."""
    return {
        "commit": git_commit(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "versions": versions(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(exist_ok=True)
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="agentos-bench-"))

    guard(args.max_seconds)
    started = time.monotonic()
    report: dict[str, Any] = {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "params": {k: v for k, v in vars(args).items()},
        "meta": {**meta(), "tmp": str(tmp)},
        "loadavg_before": loadavg(),
        "servers": [],
    }
    code = 0
    try:
        db_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
        env = django_env(db_url)
        log(f"temp dir {tmp}")
        model_proc, model_port = start_model_server(procs, env, tmp, args.words)
        base_url = f"http://{HOST}:{model_port}/v1"
        log(f"scripted model server at {base_url} (pid {model_proc.pid})")

        step(["manage.py", "migrate", "--noinput", "-v", "0"], env, timeout=180)
        out = step([str(BENCH / "setup_db.py"), "--base-url", base_url], env, timeout=60)
        setup = json.loads(out.strip().splitlines()[-1])
        setup["base_url"] = base_url
        log(f"database migrated; agent {setup['agent']!r} on the scripted model")

        if not args.no_queries:
            qpath = tmp / "queries.json"
            proc = subprocess.run(
                [PY, str(BENCH / "queries.py"), "--agent", setup["agent"], "--out", str(qpath)],
                cwd=ROOT,
                env=env,
                timeout=180,
                capture_output=True,
            )
            if proc.returncode == 0:
                report["queries"] = json.loads(qpath.read_text())
                for p in report["queries"]["paths"]:
                    log(f"queries per run, {p['path']}: run 1 = {p['run_1']}, run {p['runs']} = {p['last']}")
            else:
                report["queries_error"] = proc.stderr.decode()[-3000:]
                log(f"query count failed:\n{report['queries_error']}")

        report["box_busy_before_cores"] = wait_quiet(args.quiet_wait)
        if not args.no_client_check:
            log("client check: raw asyncio client vs httpx.AsyncClient, scripted server, 8 clients")
            checks = []
            for transport in ("raw", "httpx"):
                r = scenario(
                    label=f"ceiling via {transport}",
                    port=model_port,
                    clients=8,
                    duration=args.ceiling_duration,
                    loop=loadgen.model_loop(stream=False),
                    server_pid=model_proc.pid,
                    model_pid=None,
                    transport=transport,
                )
                checks.append(r)
                log_scenario(r)
            report["client_check"] = checks

        if not args.no_ceiling:
            log("ceiling: scripted model server called directly")
            ceiling = []
            for stream in (False, True):
                for clients in args.clients:
                    r = scenario(
                        label=f"ceiling {'streaming' if stream else 'non-streaming'}",
                        port=model_port,
                        clients=clients,
                        duration=args.ceiling_duration,
                        loop=loadgen.model_loop(stream=stream),
                        server_pid=model_proc.pid,
                        model_pid=None,
                        transport=args.transport,
                    )
                    r["stream"] = stream
                    ceiling.append(r)
                    log_scenario(r)
            report["ceiling"] = ceiling

        run_servers(
            kinds=args.servers,
            procs=procs,
            env=env,
            tmp=tmp,
            args=args,
            setup=setup,
            model_pid=model_proc.pid,
            stamp=stamp,
            report=report,
        )
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc}); cleaning up")
        report["aborted"] = f"interrupted: {exc}"
        code = 130
    except Exception as exc:  # noqa: BLE001 - report what we have, then fail
        log(f"FAILED: {type(exc).__name__}: {exc}")
        report["aborted"] = f"{type(exc).__name__}: {exc}"
        code = 1
    finally:
        signal.alarm(0)
        report["loadavg_after"] = loadavg()
        procs.stop_all()
        report["wall_s"] = round(time.monotonic() - started, 1)
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    if (by_server := ratios_vs_agno(report)) is not None:
        report["ratios_vs_agno"] = by_server
    md = render(report)
    report["markdown"] = md
    json_path = RESULTS / f"{stamp}.json"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    (RESULTS / f"{stamp}.md").write_text(md)
    print()
    print(md)
    log(f"wrote {json_path.relative_to(ROOT)} and .md; total {report['wall_s']} s")
    return code


if __name__ == "__main__":
    sys.exit(main())

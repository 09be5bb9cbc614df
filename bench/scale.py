"""Scale out: runs/s with 1, 2 and 4 server processes on PostgreSQL and Redis (performance issue 22).

    .venv/bin/python bench/scale.py                     # 1, 2, 4 processes; 8 and 32 clients (~3 minutes)
    .venv/bin/python bench/scale.py --quick             # 3 s per scenario, ~1 minute, noisier
    .venv/bin/python bench/scale.py --processes 1,2 --clients 8 --duration 5

The production set-up of docs/deployment.md, on loopback: a fresh PostgreSQL database
(`agentos_scale_<random>` on 127.0.0.1:5432, user postgres; dropped at the end), Redis for the
channel layer and Django's cache (REDIS_URL, default redis://127.0.0.1:6379/0, under key prefixes
of this run's own, whose keys are deleted at the end: nothing is flushed), the scripted model
server (one process, 50 words), and for N in --processes, N uvicorn processes started with the
production command, each on its own port ("Run the command once per process, each on its own
port, behind the reverse proxy"). The load client gives each of its connections one of the N
ports, round-robin: the spread is exact, as a proxy's round-robin would make it.

Why N processes on N ports rather than `uvicorn --workers N` on one: (1) the CPU of the servers is
the sum of utime+stime over N pids this script started itself, nothing guessed from a process tree
that a supervisor may change under us; (2) with a fixed number of keep-alive connections, which
worker accepts which connection under `--workers` is left to the kernel's wake-ups, so a run with 8
clients could put 5 on one worker and 1 on another, and the figure would measure that imbalance
rather than what one more process adds. The runs per process are in the JSON (`per_port_runs`)
to show the spread.

Per scenario: runs/s, p50/p99 latency, server CPU per run (summed over the N processes), the CPU
per run of PostgreSQL (every `postgres` process, plus the children the postmaster reaped meanwhile)
and of redis-server, read from /proc, and errors. The box has few cores (2 on the reference box)
shared by the load client, the model server, PostgreSQL, Redis and the servers: beyond the cores'
count, processes cannot add throughput here; what transfers to a capacity model is the CPU per run
(server, PostgreSQL, Redis) and the runs/s per process up to the core count.

Results: a markdown table on stdout and bench/results/<stamp>-scale.json (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
import run as bench  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


# ---- other processes' CPU: PostgreSQL and Redis, from /proc ------------------------------------


def _stat(pid: str) -> tuple[str, list[str]] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            head, _, rest = f.read().rpartition(")")
    except OSError:  # gone, or not ours to read
        return None
    return head.partition("(")[2], rest.split()


def comm_cpu(comm: str, include_reaped: bool = False) -> float:
    """utime+stime (s) of every process named `comm`; with `include_reaped`, also cutime+cstime of
    those whose parent is not `comm` (the postmaster): backends that exited during the scenario
    count too."""
    total = 0.0
    stats = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and (st := _stat(pid)) is not None and st[0] == comm:
            stats[pid] = st[1]
    for fields in stats.values():
        total += int(fields[11]) + int(fields[12])
        if include_reaped and fields[1] not in stats:  # fields[1]: the parent's pid
            total += int(fields[13]) + int(fields[14])
    return total / bench.CLK_TCK


class Counters:
    """Work counted by PostgreSQL and Redis themselves. PostgreSQL: the transaction ids assigned,
    i.e. the transactions that wrote (the next xid of a fresh snapshot, which assigns none itself;
    exact at once, unlike pg_stat_database's counters, which backends report up to 10 s late; the
    whole cluster's, so others' writes would count too). Redis: the commands it processed (INFO
    stats: every client's; the probe's own INFO adds one)."""

    def __init__(self, db_name: str, redis_url: str) -> None:
        import psycopg
        import redis

        self.db_name = db_name
        self.pg = psycopg.connect(PG_ADMIN, autocommit=True)
        self.redis = redis.Redis.from_url(redis_url)

    def read(self) -> tuple[int, int]:
        row = self.pg.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
        commands = int(self.redis.info("stats")["total_commands_processed"])
        return (int(row[0]) if row else 0), commands

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pg.close()
        with contextlib.suppress(Exception):
            self.redis.close()


# ---- load spread over N ports ------------------------------------------------------------------


async def run_spread(
    *,
    ports: list[int],
    clients: int,
    duration: float,
    loop_factory: loadgen.ClientLoop,
    on_start: Any,
    timeout: float = 30.0,
) -> tuple[loadgen.ScenarioResult, list[int]]:
    """loadgen.run_clients, with client i on ports[i % N]; also the successful runs per port."""
    conns = [loadgen.RawConnection(bench.HOST, ports[i % len(ports)], timeout) for i in range(clients)]
    await asyncio.gather(*(c.connect() for c in conns))
    per_client: list[list[loadgen.Sample]] = [[] for _ in range(clients)]
    on_start()
    started = loadgen.perf()
    deadline = started + duration
    try:
        await asyncio.gather(*(loop_factory(i, conns[i], deadline, per_client[i]) for i in range(clients)))
    finally:
        wall = loadgen.perf() - started
        for c in conns:
            await c.aclose()
    result = loadgen.ScenarioResult(samples=[s for lst in per_client for s in lst], wall=wall)
    for s in result.samples:
        if not s.ok:
            result.errors[s.error or "error"] = result.errors.get(s.error or "error", 0) + 1
    per_port = [0] * len(ports)
    for i, lst in enumerate(per_client):
        per_port[i % len(ports)] += sum(1 for s in lst if s.ok)
    return result, per_port


def scenario(
    *,
    servers: list[Any],
    ports: list[int],
    clients: int,
    duration: float,
    stream: bool,
    setup: dict[str, Any],
    model_pid: int,
    counters: Counters,
    idle_pids: list[int] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """One load scenario over the N processes; the figures of bench.run.scenario plus the sums.

    `idle_pids`: the other process sets' servers, waiting for their turn; their CPU meanwhile is ours,
    not "other load"."""
    marks: dict[str, Any] = {}
    pids = [p.pid for p in servers]

    def on_start() -> None:
        marks["counters"] = counters.read()
        marks["idle"] = sum(bench.proc_cpu(pid) for pid in idle_pids)
        marks["servers"] = [bench.proc_cpu(pid) for pid in pids]
        marks["model"] = bench.proc_cpu(model_pid)
        marks["pg"] = comm_cpu("postgres", include_reaped=True)
        marks["redis"] = comm_cpu("redis-server")
        marks["client"] = time.process_time()
        marks["box"] = bench.box_cpu()

    loop = loadgen.agent_loop(agent=setup["agent"], token=setup["token"], stream=stream)
    result, per_port = asyncio.run(
        run_spread(ports=ports, clients=clients, duration=duration, loop_factory=loop, on_start=on_start)
    )
    per_server = [bench.proc_cpu(pid) - c0 for pid, c0 in zip(pids, marks["servers"], strict=True)]
    server_cpu = sum(per_server)
    model_cpu = bench.proc_cpu(model_pid) - marks["model"]
    pg_cpu = comm_cpu("postgres", include_reaped=True) - marks["pg"]
    redis_cpu = comm_cpu("redis-server") - marks["redis"]
    client_cpu = time.process_time() - marks["client"]
    idle_cpu = sum(bench.proc_cpu(pid) for pid in idle_pids) - marks["idle"]
    xacts, commands = (b - a for a, b in zip(marks["counters"], counters.read(), strict=True))
    busy1, _total = bench.box_cpu()
    box_busy_s = (busy1 - marks["box"][0]) / bench.CLK_TCK
    cores = os.cpu_count() or 1
    others = box_busy_s - server_cpu - model_cpu - pg_cpu - redis_cpu - client_cpu - idle_cpu

    ok = [s for s in result.samples if s.ok]
    lat = sorted(s.latency for s in ok)
    ttfc = sorted(s.ttfc for s in ok if s.ttfc is not None)
    per = max(1, len(ok))
    wall = result.wall or 1.0

    def per_run(cpu: float) -> float:
        return round(cpu / per * 1000, 2)

    return {
        "processes": len(servers),
        "mode": "stream" if stream else "nonstream",
        "clients": clients,
        "runs": len(result.samples),
        "ok": len(ok),
        "errors": len(result.samples) - len(ok),
        "error_kinds": result.errors,
        "wall_s": round(result.wall, 3),
        "runs_per_s": round(len(ok) / wall, 1),
        "runs_per_s_per_process": round(len(ok) / wall / len(servers), 1),
        "per_port_runs": per_port,
        "p50_ms": bench.ms(bench.pctl(lat, 50)),
        "p90_ms": bench.ms(bench.pctl(lat, 90)),
        "p99_ms": bench.ms(bench.pctl(lat, 99)),
        "ttfc_p50_ms": bench.ms(bench.pctl(ttfc, 50)),
        "server_cpu_ms_per_run": per_run(server_cpu),
        "server_cpu_ms_per_run_by_process": [per_run(c) for c in per_server],
        "server_cpu_cores": round(server_cpu / wall, 2),
        "server_cpu_cores_by_process": [round(c / wall, 2) for c in per_server],
        "pg_cpu_ms_per_run": per_run(pg_cpu),
        "pg_cpu_cores": round(pg_cpu / wall, 2),
        "redis_cpu_ms_per_run": per_run(redis_cpu),
        "redis_cpu_cores": round(redis_cpu / wall, 2),
        "pg_write_transactions_per_run": round(xacts / per, 2),
        "redis_commands_per_run": round(max(0, commands - 1) / per, 2),
        "idle_sets_cpu_cores": round(idle_cpu / wall, 3),
        "model_cpu_cores": round(model_cpu / wall, 2),
        "client_cpu_ms_per_run": per_run(client_cpu),
        "client_cpu_cores": round(client_cpu / wall, 2),
        "box_busy_cores": round(box_busy_s / wall, 2),
        "box_cores": cores,
        "other_cpu_cores": round(max(0.0, others) / wall, 2),
        "loadavg_1m": bench.loadavg()["1m"],
    }


def log_row(r: dict[str, Any]) -> None:
    bench.log(
        f"  {r['processes']} proc {r['mode']:<9} {r['clients']:>2} clients: {r['runs_per_s']:>6} runs/s "
        f"({r['runs_per_s_per_process']}/proc, spread {r['per_port_runs']}), p50 {r['p50_ms']} / p99 {r['p99_ms']} ms, "
        f"server {r['server_cpu_ms_per_run']} ms/run ({r['server_cpu_cores']} cores), "
        f"PG {r['pg_cpu_ms_per_run']} ms/run ({r['pg_write_transactions_per_run']} writes), "
        f"Redis {r['redis_cpu_ms_per_run']} ms/run ({r['redis_commands_per_run']} commands), model {r['model_cpu_cores']} cores, "
        f"box {r['box_busy_cores']}/{r['box_cores']} cores, other {r['other_cpu_cores']}, errors {r['errors']}"
    )


# ---- the processes -----------------------------------------------------------------------------


def production_argv(port: int) -> list[str]:
    """docs/deployment.md's web command on loopback (plus --log-level warning: no start-up lines)."""
    argv = [str(bench.VENV_BIN / "uvicorn"), "agentos_site.asgi:application", "--host", bench.HOST]
    return [*argv, "--port", str(port), "--lifespan", "off", "--no-access-log", "--log-level", "warning"]


class ServerSet:
    """N uvicorn processes, each on its own port."""

    def __init__(self, n: int, env: dict[str, str], tmp: Path) -> None:
        self.n = n
        # The sets are all up at once: each spreads its own processes over the CPUs
        # (AGENTOS_CPU_AFFINITY=auto takes a CPU no other process of its lock directory holds).
        self.env = {**env, "AGENTOS_CPU_LOCK_DIR": str(tmp / f"cpu-locks-{n}")}
        self.tmp = tmp
        self.ports = [bench.free_port() for _ in range(n)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, procs: bench.Processes, token: str) -> None:
        for i, port in enumerate(self.ports):
            log = self.tmp / f"uvicorn-{self.n}-{i}.log"
            self.procs.append(procs.start(f"uvicorn {self.n}/{i}", production_argv(port), self.env, log))
        headers = {"Authorization": f"Bearer {token}"}
        for i, (port, proc) in enumerate(zip(self.ports, self.procs, strict=True)):
            log = self.tmp / f"uvicorn-{self.n}-{i}.log"
            bench.wait_ready(f"http://{bench.HOST}:{port}/api/agents/", headers, proc, log, timeout=90)

    def check_alive(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn {self.n}/{i} died:\n{bench.tail(self.tmp / f'uvicorn-{self.n}-{i}.log')}")

    def rss_mib(self) -> list[float]:
        return [bench.proc_mem(p.pid)["VmRSS"] for p in self.procs]

    def stop(self, procs: bench.Processes) -> None:
        for proc in self.procs:
            procs.stop(proc, signal.SIGINT)


def create_database(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_cleanup(url: str, prefixes: list[str]) -> int:
    """Delete the keys this run wrote (its own prefixes only); never a FLUSH."""
    import redis

    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        for prefix in prefixes:
            for key in client.scan_iter(match=f"{prefix}*", count=500):
                deleted += client.delete(key)
    finally:
        client.close()
    return deleted


# ---- report ------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| processes | mode | clients | runs/s | runs/s per process | p50 ms | p99 ms | server CPU ms/run "
        "| server cores | PostgreSQL CPU ms/run (writing transactions) | Redis CPU ms/run (commands) | load client cores | box busy (cores) | other load (cores) | errors |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        out.append(
            f"| {r['processes']} | {'streamed' if r['mode'] == 'stream' else 'non-streaming'} | {r['clients']} "
            f"| {r['runs_per_s']} | {r['runs_per_s_per_process']} | {r['p50_ms']} | {r['p99_ms']} "
            f"| {r['server_cpu_ms_per_run']} | {r['server_cpu_cores']} "
            f"| {r['pg_cpu_ms_per_run']} ({r['pg_write_transactions_per_run']}) "
            f"| {r['redis_cpu_ms_per_run']} ({r['redis_commands_per_run']}) | {r['client_cpu_cores']} | {r['box_busy_cores']} / {r['box_cores']} | {r['other_cpu_cores']} "
            f"| {r['errors']} |"
        )
    return "\n".join(out)


def render(report: dict[str, Any]) -> str:
    meta = report["meta"]
    rows = sorted(report["rows"], key=lambda r: (r["mode"] == "stream", r["clients"], r["processes"]))
    note = (
        f"This box has {meta['cpus']} cores shared by the load client, the scripted model server, "
        "PostgreSQL, Redis and the servers: more processes than cores cannot scale linearly here. "
        "What carries over to a capacity model is the CPU per run (server, PostgreSQL, Redis) and the "
        "runs/s per process while processes ≤ cores."
    )
    return "\n".join(
        [
            f"## Scale out: {', '.join(str(n) for n in report['params']['processes'])} processes on "
            f"PostgreSQL and Redis, {report['started']}",
            "",
            f"{meta['cpus']} CPUs ({meta['cpu_model']}), Python {meta['python']}, uvicorn "
            f"{meta['versions'].get('uvicorn')}, PostgreSQL {meta.get('postgres', '?')}, Redis {meta.get('redis', '?')}; "
            f"{report['params']['duration']} s per scenario, the process sets taking turns; model answers "
            f"{report['params']['words']} words; commit {meta['commit']}.",
            "",
            table(rows),
            "",
            note,
        ]
    )


def server_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, timeout=10).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return "?"
    for line in out.splitlines():  # redis-cli info: "redis_version:7.0.15"; psql: the version alone
        if line.strip() and not line.startswith("#"):
            return line.split(":", 1)[1].strip() if line.startswith("redis_version") else line.strip()
    return "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", default="1,2,4", help="server process counts, comma-separated")
    p.add_argument("--clients", default="8,32", help="concurrencies, comma-separated")
    p.add_argument("--duration", type=float, help="seconds per scenario (default 10, quick 3)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up per mode and process set (default 2, quick 1)")
    p.add_argument("--quick", action="store_true", help="short scenarios")
    p.add_argument(
        "--cpu-affinity",
        default="auto",
        help="AGENTOS_CPU_AFFINITY of the servers: auto (production: one CPU per process), or '' for none",
    )
    p.add_argument("--words", type=int, default=50, help="words per model answer")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    p.add_argument("--quiet-wait", type=float, default=20, help="max seconds to wait for an idle box first")
    p.add_argument("--keep-db", action="store_true", help="keep the PostgreSQL database (and the temp dir)")
    p.add_argument("--max-seconds", type=float, default=1200, help="hard limit on the whole run")
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup or (1.0 if args.quick else 2.0)
    args.processes = [int(n) for n in args.processes.split(",") if n]
    args.clients = [int(c) for c in args.clients.split(",") if c]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    bench.RESULTS.mkdir(exist_ok=True)
    tag = secrets.token_hex(4)
    db_name = f"agentos_scale_{tag}"
    prefixes = [f"scale{tag}-layer", f"scale{tag}-cache"]
    procs = bench.Processes()
    tmp = Path(tempfile.mkdtemp(prefix="agentos-scale-"))

    bench.guard(args.max_seconds)
    started = time.monotonic()
    report: dict[str, Any] = {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "params": {k: v for k, v in vars(args).items()},
        "meta": {
            **bench.meta(),
            "postgres": server_version(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "show server_version"]),
            "redis": server_version(["redis-cli", "-u", args.redis_url, "info", "server"]),
            "database": db_name,
            "redis_prefixes": prefixes,
            "how": "N uvicorn processes on N ports (docs/deployment.md's command), load client round-robin over the ports",
        },
        "loadavg_before": bench.loadavg(),
        "rows": [],
        "sets": {},
    }
    sets: list[ServerSet] = []
    counters: Counters | None = None
    created = False
    code = 0
    try:
        db_url = create_database(db_name)
        created = True
        env = bench.django_env(db_url)
        env.update(
            REDIS_URL=args.redis_url,
            CHANNEL_LAYER_PREFIX=prefixes[0],
            DJANGO_CACHE_URL=args.redis_url,
            DJANGO_CACHE_KEY_PREFIX=prefixes[1],
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            AGENTOS_CPU_AFFINITY=args.cpu_affinity,
        )
        bench.log(f"database {db_name}, Redis {args.redis_url} (prefixes {', '.join(prefixes)}), temp dir {tmp}")
        model_proc, model_port = bench.start_model_server(procs, env, tmp, args.words)
        base_url = f"http://{bench.HOST}:{model_port}/v1"
        bench.step(["manage.py", "migrate", "--noinput", "-v", "0"], env, timeout=300)
        out = bench.step([str(BENCH / "setup_db.py"), "--base-url", base_url], env, timeout=60)
        setup = json.loads(out.strip().splitlines()[-1])
        counters = Counters(db_name, args.redis_url)
        bench.log(f"migrated; agent {setup['agent']!r} on the scripted model server {base_url}")

        report["box_busy_before_cores"] = bench.wait_quiet(args.quiet_wait)
        for n in args.processes:
            s = ServerSet(n, env, tmp)
            sets.append(s)
            t0 = time.monotonic()
            s.start(procs, setup["token"])
            report["sets"][str(n)] = {
                "argv": production_argv(s.ports[0]),
                "ports": s.ports,
                "startup_s": round(time.monotonic() - t0, 2),
                "rss_idle_mib": s.rss_mib(),
            }
            bench.log(f"{n} process(es) up on ports {s.ports} in {time.monotonic() - t0:.1f} s")
        for s in sets:  # imports, connection pools, caches: both modes, not recorded
            for stream in (False, True):
                scenario(
                    servers=s.procs,
                    ports=s.ports,
                    clients=max(8, 2 * s.n),
                    duration=args.warmup,
                    stream=stream,
                    setup=setup,
                    model_pid=model_proc.pid,
                    counters=counters,
                    idle_pids=[p.pid for o in sets if o is not s for p in o.procs],
                )
        plan = [(stream, clients) for stream in (False, True) for clients in args.clients]
        for i, (stream, clients) in enumerate(plan):
            order = sets[i % len(sets) :] + sets[: i % len(sets)]
            bench.log(
                f"scenario {i + 1}/{len(plan)}: {'streamed' if stream else 'non-streaming'}, {clients} clients; "
                f"order {', '.join(str(s.n) for s in order)} process(es)"
            )
            for s in order:
                s.check_alive()
                r = scenario(
                    servers=s.procs,
                    ports=s.ports,
                    clients=clients,
                    duration=args.duration,
                    stream=stream,
                    setup=setup,
                    model_pid=model_proc.pid,
                    counters=counters,
                    idle_pids=[p.pid for o in sets if o is not s for p in o.procs],
                )
                report["rows"].append(r)
                log_row(r)
        for s in sets:
            report["sets"][str(s.n)]["rss_after_mib"] = s.rss_mib()
    except KeyboardInterrupt as exc:
        bench.log(f"interrupted ({exc}); cleaning up")
        report["aborted"] = f"interrupted: {exc}"
        code = 130
    except Exception as exc:  # noqa: BLE001 - report what we have, then fail
        bench.log(f"FAILED: {type(exc).__name__}: {exc}")
        report["aborted"] = f"{type(exc).__name__}: {exc}"
        code = 1
    finally:
        signal.alarm(0)
        report["loadavg_after"] = bench.loadavg()
        procs.stop_all()
        if counters is not None:
            counters.close()
        with contextlib.suppress(Exception):
            report["redis_keys_deleted"] = redis_cleanup(args.redis_url, prefixes)
        if created and not args.keep_db:
            try:
                drop_database(db_name)
            except Exception as exc:  # noqa: BLE001 - say so; the database is named in the JSON
                bench.log(f"could not drop {db_name}: {exc}")
        if not args.keep_db:
            shutil.rmtree(tmp, ignore_errors=True)
        report["wall_s"] = round(time.monotonic() - started, 1)

    md = render(report)
    report["markdown"] = md
    path = bench.RESULTS / f"{stamp}-scale.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print()
    print(md)
    bench.log(f"wrote {path.relative_to(bench.ROOT)}; total {report['wall_s']} s")
    return code


if __name__ == "__main__":
    sys.exit(main())

"""A/B: the server CPU per run of two checkouts, measured side by side, interleaved.

Each optimisation of the run path is judged by this: checkout A (a git ref, `--base`, checked out
into a temporary worktree) and checkout B (this one, as it is on disk, uncommitted changes
included) each get a fresh SQLite database and one uvicorn process on the same scripted model
server; then rounds of load alternate between them (A B, B A, A B ...), so that whatever else the
box does weighs on both alike. What is compared is the server's CPU per run (utime+stime of its
process over the scenario / successful runs), the figure least disturbed by other load; the
medians over the rounds and their ratio B/A are printed.

    .venv/bin/python bench/ab.py --base HEAD            # uncommitted changes against the last commit
    .venv/bin/python bench/ab.py --base main~3 --rounds 5 --clients 8 --server daphne

Never a test: a report for the person changing the code.
"""

from __future__ import annotations

import argparse
import json
import statistics
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


def side_up(
    name: str,
    root: Path,
    procs: bench.Processes,
    tmp: Path,
    base_url: str,
    server: str,
    extra: str = "",
    extra_env: str = "",
) -> dict[str, Any]:
    """Migrate a fresh database for `root`, seed the agent, start its server; its facts."""
    db = tmp / f"{name}.sqlite3"
    env = bench.django_env(f"sqlite:///{db}")
    env["PYTHONPATH"] = str(root)
    env = bench.server_env(server, env)
    env.update(item.split("=", 1) for item in extra_env.split() if "=" in item)
    for argv in (["manage.py", "migrate", "--noinput", "-v", "0"], [str(root / "bench" / "setup_db.py")]):
        if argv[0].endswith("setup_db.py"):
            argv = [*argv, "--base-url", base_url]
        done = subprocess.run([bench.PY, *argv], cwd=root, env=env, capture_output=True, timeout=240)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: {' '.join(argv)} failed:\n{done.stderr.decode()[-2000:]}")
    setup = json.loads(done.stdout.decode().strip().splitlines()[-1])
    port = bench.free_port()
    log = tmp / f"{name}.log"
    proc = procs.start(name, [*bench.server_argv(server, port, False), *extra.split()], env, log, cwd=root)
    headers = {"Authorization": f"Bearer {setup['token']}"}
    bench.wait_ready(f"http://{bench.HOST}:{port}/api/agents/", headers, proc, log, timeout=60)
    return {"name": name, "root": root, "proc": proc, "port": port, **setup}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="HEAD", help="git ref of checkout A (default HEAD)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per scenario")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--modes", default="nonstream,stream")
    p.add_argument("--server", default="uvicorn", help="uvicorn or daphne, optionally pinned: uvicorn@1")
    p.add_argument("--words", type=int, default=50)
    p.add_argument("--same", action="store_true", help="A is this checkout too (to compare server options)")
    p.add_argument("--a-args", default="", help="extra server arguments for A, e.g. '--loop asyncio'")
    p.add_argument("--b-args", default="", help="extra server arguments for B")
    p.add_argument("--a-env", default="", help="extra environment for A's server, e.g. 'AGENTOS_X=1 Y=2'")
    p.add_argument("--b-env", default="", help="extra environment for B's server")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="agentos-ab-"))
    base = bench.ROOT if args.same else tmp / "base"
    if not args.same:
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(base), args.base], cwd=bench.ROOT, check=True)
    procs = bench.Processes()
    try:
        env = bench.django_env(f"sqlite:///{tmp / 'unused.sqlite3'}")
        model, model_port = bench.start_model_server(procs, env, tmp, args.words)
        base_url = f"http://{bench.HOST}:{model_port}/v1"
        sides = [
            side_up("A", base, procs, tmp, base_url, args.server, args.a_args, args.a_env),
            side_up("B", bench.ROOT, procs, tmp, base_url, args.server, args.b_args, args.b_env),
        ]
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        cpu: dict[tuple[str, str], list[float]] = {}
        rps: dict[tuple[str, str], list[float]] = {}
        p99: dict[tuple[str, str], list[float]] = {}
        for side in sides:  # warm-up, not recorded
            for mode in modes:
                loop = loadgen.agent_loop(agent=side["agent"], token=side["token"], stream=mode == "stream")
                bench.scenario(
                    label="warm-up",
                    port=side["port"],
                    clients=args.clients,
                    duration=1.5,
                    loop=loop,
                    server_pid=side["proc"].pid,
                    model_pid=model.pid,
                )
        for round_ in range(args.rounds):
            order = sides if round_ % 2 == 0 else list(reversed(sides))
            for mode in modes:
                for side in order:
                    loop = loadgen.agent_loop(agent=side["agent"], token=side["token"], stream=mode == "stream")
                    r = bench.scenario(
                        label=f"{side['name']} {mode}",
                        port=side["port"],
                        clients=args.clients,
                        duration=args.duration,
                        loop=loop,
                        server_pid=side["proc"].pid,
                        model_pid=model.pid,
                    )
                    if r["errors"]:
                        print(f"  ! {side['name']} {mode}: {r['errors']} errors {r['error_kinds']}", flush=True)
                    cpu.setdefault((side["name"], mode), []).append(r["server_cpu_ms_per_run"])
                    rps.setdefault((side["name"], mode), []).append(r["runs_per_s"])
                    p99.setdefault((side["name"], mode), []).append(r["p99_ms"])
                    print(
                        f"[{time.strftime('%H:%M:%S')}] round {round_ + 1} {side['name']} {mode:9} "
                        f"{r['server_cpu_ms_per_run']:6.2f} ms CPU/run {r['runs_per_s']:7.1f} runs/s "
                        f"(other load {r['other_cpu_cores']} cores)",
                        flush=True,
                    )
        print(
            f"\nA = {'working tree ' + args.a_args if args.same else args.base}, B = working tree {args.b_args} {args.b_env}; {args.server}, {args.clients} clients, {args.rounds} rounds"
        )
        print("| mode | A CPU ms/run | B CPU ms/run | B/A | A runs/s | B runs/s | A p99 ms | B p99 ms |")
        print("|---|--:|--:|--:|--:|--:|--:|--:|")
        for mode in modes:
            a, b = statistics.median(cpu[("A", mode)]), statistics.median(cpu[("B", mode)])
            ra, rb = statistics.median(rps[("A", mode)]), statistics.median(rps[("B", mode)])
            pa, pb = statistics.median(p99[("A", mode)]), statistics.median(p99[("B", mode)])
            print(f"| {mode} | {a:.2f} | {b:.2f} | {b / a:.2f} | {ra:.1f} | {rb:.1f} | {pa:.0f} | {pb:.0f} |")
        rss = {side["name"]: bench.proc_mem(side["proc"].pid)["VmRSS"] for side in sides}
        print(f"\nRSS after the rounds: A {rss['A']} MiB, B {rss['B']} MiB (B/A {rss['B'] / rss['A']:.2f})")
    finally:
        procs.stop_all()
        if not args.same:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=bench.ROOT, check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

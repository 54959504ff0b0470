"""A team arriving at once on the real local platform: N users (default 20) log in at the
same moment through the proxy, and each reaches VS Code's workbench HTML and opens its
websocket, as a class or a stand-up does.

    python bench/many_users.py [N ...] [--services all|none] [--by-process] [--against REF]

For each N, on a fresh platform (its state folder new: every home is cloned, as on a
team's first day; the OS accounts of earlier runs are reused): p50/p95/max of login ->
server ready, -> VS Code HTML, -> websocket open; failures (must be 0); the hub API's
latency while it happens (GET /hub/api/user with a token, every 0.2 s); the machine's
memory the logins added (MemTotal - MemAvailable, peak minus before); the CPU the machine
spent (all cores, /proc/stat) while the logins ran. With --by-process, where that CPU
went: the platform's processes sampled every 0.3 s, grouped by command (a process that
lives less than that is missed). With --against REF, each N runs twice in turn: on this
checkout and on a worktree of REF (an earlier commit). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.first_login import checkout_of  # noqa: E402
from mlops_ide.processes import descendants  # noqa: E402
from tests.support.local_platform import RunningPlatform, log_in_to_vscode  # noqa: E402

STEPS = ("login", "ready", "vscode_html", "websocket")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, nearest rank (p95 of 20 values is the 19th)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def memory_used_mib() -> float:
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kib = lambda name: int(fields[name].split()[0])  # noqa: E731
    return (kib("MemTotal") - kib("MemAvailable")) / 1024


def cpu_seconds() -> tuple[float, float]:
    """Seconds of CPU the whole machine spent (all cores), and those the hypervisor took
    away (steal: a noisy neighbour), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq) / 100, steal / 100  # USER_HZ


class Watch(threading.Thread):
    """The hub API's latency and the machine's memory, sampled while the logins run."""

    def __init__(self, platform: RunningPlatform, token: str):
        super().__init__(daemon=True)
        self.platform, self.token = platform, token
        self.latencies: list[float] = []
        self.api_errors = 0
        self.peak_memory = memory_used_mib()
        self.done = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"token {self.token}"
        while not self.done.is_set():
            started = time.perf_counter()
            try:
                ok = session.get(f"{self.platform.url}/hub/api/user", timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            self.latencies.append(time.perf_counter() - started)
            self.api_errors += not ok
            self.peak_memory = max(self.peak_memory, memory_used_mib())
            self.done.wait(0.2)


class CPUByProcess(threading.Thread):
    """CPU seconds of the platform's processes while the logins run, by command."""

    def __init__(self, platform: RunningPlatform):
        super().__init__(daemon=True)
        self.platform = platform
        self.seen: dict[int, tuple[str, float]] = {}  # pid -> (command, CPU seconds so far)
        self.sample()
        self.before = {pid: cpu for pid, (_, cpu) in self.seen.items()}  # only what comes after counts
        self.done = threading.Event()

    def sample(self) -> None:
        for pid in descendants(self.platform.proc.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            command = " ".join(Path(a.decode(errors="replace")).name for a in argv[:3] if a)[:60]
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            self.seen[pid] = (command or self.seen.get(pid, ("?", 0))[0], cpu)

    def run(self) -> None:
        while not self.done.wait(0.3):
            self.sample()

    def report(self, users: int) -> None:
        by_command, count = Counter(), Counter()
        for pid, (command, cpu) in self.seen.items():
            by_command[command] += cpu - self.before.get(pid, 0)
            count[command] += 1
        print(f"   CPU by process (sampled every 0.3 s; per login = / {users}):")
        for command, seconds in by_command.most_common(8):
            print(
                f"     {seconds:6.1f} CPU-s  {seconds / users:4.2f} per login  "
                f"x{count[command]:<3d} {command}"
            )


def api_token(platform: RunningPlatform) -> str:
    admin = platform.login("admin")
    response = admin.post(
        f"{platform.url}/hub/api/users/admin/tokens",
        json={"note": "many_users benchmark", "expires_in": 3600},
        headers={"X-XSRFToken": admin.cookies.get("_xsrf", path="/hub/") or ""},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["token"]


def team_arrives(platform: RunningPlatform, count: int, by_process: bool = False) -> dict:
    users = [f"team{n}" for n in range(count)]
    for user in users:
        platform.password_of(user)  # the hub accounts exist before the clock starts
    watch = Watch(platform, api_token(platform))
    time.sleep(2)  # let the platform settle after the accounts
    memory_before, (cpu_before, steal_before) = memory_used_mib(), cpu_seconds()
    watch.start()
    processes = CPUByProcess(platform) if by_process else None
    if processes:
        processes.start()
    failures: list[str] = []
    started = time.perf_counter()

    def one(user: str) -> dict[str, float] | None:
        try:
            return log_in_to_vscode(platform, user, started)
        except Exception as error:  # a benchmark counts failures, it does not stop
            failures.append(f"{user}: {error}")
            return None

    with ThreadPoolExecutor(max_workers=count) as pool:
        results = [r for r in pool.map(one, users) if r]
    wall = time.perf_counter() - started
    cpu_after, steal_after = cpu_seconds()
    cpu, steal = cpu_after - cpu_before, steal_after - steal_before
    watch.done.set()
    watch.join()
    if processes:
        processes.done.set()
        processes.join()
    return {
        "users": count,
        "results": results,
        "failures": failures,
        "wall": wall,
        "cpu": cpu,
        "steal": steal,
        "memory": watch.peak_memory - memory_before,
        "api": watch.latencies,
        "api_errors": watch.api_errors,
        "processes": processes,
    }


def report(run: dict) -> None:
    print(f"== {run['users']} users at once: {len(run['failures'])} failure(s), all in {run['wall']:.1f} s")
    for failure in run["failures"]:
        print(f"   FAILED {failure}")
    for step in STEPS:
        values = [r[step] for r in run["results"]]
        if values:
            print(
                f"   login -> {step:12s} p50 {statistics.median(values):5.1f} s  "
                f"p95 {percentile(values, 95):5.1f} s  max {max(values):5.1f} s"
            )
    api = [seconds * 1000 for seconds in run["api"]]
    print(
        f"   hub API while it happens: p50 {statistics.median(api):.0f} ms  "
        f"p95 {percentile(api, 95):.0f} ms  max {max(api):.0f} ms  "
        f"({len(api)} calls, {run['api_errors']} not 200)"
    )
    print(
        f"   memory the logins added: {run['memory'] / 1024:.2f} GiB "
        f"({run['memory'] / run['users']:.0f} MiB per user: server and code-server, no tab)"
    )
    print(
        f"   CPU: {run['cpu']:.0f} CPU-s in all ({run['cpu'] / run['users']:.1f} per login), "
        f"{run['cpu'] / run['wall']:.2f} of {os.cpu_count()} cores busy on average; "
        f"{run['steal']:.0f} CPU-s taken by the hypervisor (steal)"
    )
    if run["processes"]:
        run["processes"].report(run["users"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("counts", nargs="*", type=int, default=[20])
    parser.add_argument(
        "--services", default="none", help="MLOPS_IDE_SERVICES for the platform (all: as make up)"
    )
    parser.add_argument("--by-process", action="store_true", help="where the CPU went, by command")
    parser.add_argument("--against", metavar="REF", help="also run each N on a worktree of REF, in turn")
    parser.add_argument(
        "--server-nice", type=int, help="LocalVSCodeSpawner.nice for this run (default: the platform's, 5)"
    )
    parser.add_argument(
        "--starts-at-once", type=int, help="LocalVSCodeSpawner.starts_at_once (default: the platform's)"
    )
    args = parser.parse_args()
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"this checkout": {}}
        if args.against:
            old = checkout_of(args.against, Path(tmp))
            variants[args.against] = {"PYTHONPATH": f"{old}/src:{old}"}
        try:
            for count in args.counts:
                for i, (label, code) in enumerate(variants.items()):
                    settings = {"MLOPS_IDE_SERVICES": args.services, **code}
                    spawner = {"nice": args.server_nice, "starts_at_once": args.starts_at_once}
                    lines = [f"c.LocalVSCodeSpawner.{k} = {v}\n" for k, v in spawner.items() if v is not None]
                    if lines:  # an operator's hub config file, read last
                        config = Path(tmp) / "config"
                        config.mkdir(exist_ok=True)
                        (config / "spawner.py").write_text("".join(lines))
                        settings["MLOPS_IDE_HUB_CONFIG_DIR"] = str(config)
                    platform = RunningPlatform(Path(tmp) / f"state-{count}-{i}", **settings)
                    platform.start(timeout=300)
                    try:
                        run = team_arrives(platform, count, args.by_process)
                    finally:
                        platform.stop(timeout=300)
                    run["label"] = label
                    print(f"-- {label}")
                    report(run)
                    summary.append(run)
        finally:
            if args.against:
                remove = ["git", "-C", str(ROOT), "worktree", "remove", "--force"]
                subprocess.run([*remove, str(Path(tmp) / "checkout-against")], check=False)
    if len(summary) > 1:
        print(
            "\n| code | users at once | failures | login -> VS Code HTML p50 / p95 / max | websocket p95 "
            "| hub API p95 | memory added | CPU-s per login |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for run in summary:
            html = [r["vscode_html"] for r in run["results"]] or [float("nan")]
            ws = [r["websocket"] for r in run["results"]] or [float("nan")]
            api = [s * 1000 for s in run["api"]]
            print(
                f"| {run['label']} | {run['users']} | {len(run['failures'])} | "
                f"{statistics.median(html):.1f} / "
                f"{percentile(html, 95):.1f} / {max(html):.1f} s | {percentile(ws, 95):.1f} s | "
                f"{percentile(api, 95):.0f} ms | {run['memory'] / 1024:.2f} GiB | "
                f"{run['cpu'] / run['users']:.1f} |"
            )


if __name__ == "__main__":
    main()

"""A warm `make up`, measured: the second and later starts on the same state folder.

    python bench/warm_start.py [--starts N] [--services LIST] [--against REF] [--install]

Starts the real local platform (`python -m mlops_ide.supervisor.up`, every component by
default, as `make up` runs it) once cold, then N times warm on the same state folder, and
prints, for each warm start, when each line of its output appeared (the preparation's
steps, each process's "ready in"), the banner's own figure (from the first process started),
the command's start to its banner, and to every service healthy by the hub's, MLflow's and
Airflow's own health reports (its scheduler, DAG processor and triggerer included). Then the
medians over the warm starts. Target: warm start to the banner <= 15 s. `make up`'s install
step (scripts/install.sh, nothing to install) is not in it: `--install` times that once.
`--ref REF` starts a worktree of REF instead of this checkout (edit on while it runs);
`--against REF` (repeatable) starts a worktree of REF (an earlier commit) on a state folder
of its own in turns with this checkout, and prints the ratios of the medians.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.support.local_platform import RunningPlatform, every_component_healthy, wait_for  # noqa: E402

ALL = "mlflow,serving,app,airflow"


class Timeline(threading.Thread):
    """Each new line of the platform's output, with the seconds since `started`."""

    def __init__(self, output: Path, started: float):
        super().__init__(daemon=True)
        self.output, self.started = output, started
        self.offset = output.stat().st_size if output.exists() else 0
        self.lines: list[tuple[float, str]] = []
        self.done = threading.Event()

    def run(self) -> None:
        partial = ""
        while not self.done.is_set():
            if self.output.exists():
                with open(self.output) as read:
                    read.seek(self.offset)
                    chunk = read.read()
                    self.offset = read.tell()
                partial += chunk
                *complete, partial = partial.split("\n")
                now = time.monotonic() - self.started
                self.lines += [(now, line) for line in complete if line.strip()]
            time.sleep(0.02)


def start(home: Path, settings: dict[str, str]) -> tuple[RunningPlatform, dict[str, float], list]:
    platform = RunningPlatform(home, **settings)
    started = time.monotonic()
    timeline = Timeline(platform.output, started)
    timeline.start()
    platform.start(timeout=300)
    figures = {"to banner": time.monotonic() - started}
    wait_for(lambda: every_component_healthy(platform), 300, "all services healthy", step=0.1)
    figures["to all healthy"] = time.monotonic() - started
    timeline.done.set()
    timeline.join()
    banner = re.search(r"mlops-ide is up in ([\d.]+) s", platform.log().split("==> Starting")[-1])
    figures["banner figure"] = float(banner.group(1))
    for at, line in timeline.lines:
        if line.startswith("==> Starting the platform"):
            figures["preparation"] = at
        ready = re.match(r"\s+(.+) ready in ([\d.]+) s", line)
        if ready:
            figures[f"{ready.group(1)} ready in"] = float(ready.group(2))
    return platform, figures, timeline.lines


def checkout_of(ref: str, parent: Path) -> Path:
    """A worktree of `ref` to start instead of this checkout, with this checkout's tools."""
    path = parent / f"checkout-{ref.replace('/', '-')}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref], check=True)
    (path / ".tools.env").write_text((ROOT / ".tools.env").read_text())
    return path


def variant_settings(home: Path, checkout: Path, services: str) -> dict[str, str]:
    """The settings of every start of one variant: its checkout's code, fixed ports."""
    settings = {"MLOPS_IDE_SERVICES": services, "PYTHONPATH": f"{checkout}/src:{checkout}"}
    probe = RunningPlatform(home, **settings)
    for name in ("GIT", "AIRFLOW", "MLFLOW", "SERVING", "APP"):
        settings[f"MLOPS_IDE_{name}_PORT"] = probe.env[f"MLOPS_IDE_{name}_PORT"]
    return settings


def summary(label: str, warm: list[dict[str, float]]) -> None:
    print(f"{label}: {len(warm)} warm starts, medians:")
    for key in warm[0]:
        values = [figures[key] for figures in warm if key in figures]
        spread = f"(min {min(values):.2f}, max {max(values):.2f})"
        print(f"   {key:<32} {statistics.median(values):6.2f} s  {spread}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=3, help="warm starts")
    parser.add_argument("--services", default=ALL, help="MLOPS_IDE_SERVICES")
    parser.add_argument("--install", action="store_true", help="time scripts/install.sh platform once")
    parser.add_argument(
        "--against", metavar="REF", action="append", default=[], help="a git ref to compare with (repeatable)"
    )
    parser.add_argument("--ref", metavar="REF", help="start a worktree of REF, not this checkout")
    parser.add_argument("--quiet", action="store_true", help="no timeline per start")
    options = parser.parse_args()
    if options.install:
        began = time.monotonic()
        install = ["bash", str(ROOT / "scripts/install.sh"), "platform"]
        subprocess.run(install, check=True, capture_output=True)
        print(f"scripts/install.sh platform, nothing to install: {time.monotonic() - began:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        here = {options.ref: checkout_of(options.ref, Path(tmp))} if options.ref else {"this checkout": ROOT}
        variants = dict(here)
        for ref in options.against:
            variants[ref] = checkout_of(ref, Path(tmp))
        settings = {
            label: variant_settings(Path(tmp) / f"state-{n}", checkout, options.services)
            for n, (label, checkout) in enumerate(variants.items())
        }
        warm: dict[str, list[dict[str, float]]] = {label: [] for label in variants}
        try:
            for n in range(options.starts + 1):
                # in turns, the order reversed every other round: the machine's load falls on all alike
                order = list(variants) if n % 2 == 0 else list(reversed(variants))
                for label in order:
                    home = Path(tmp) / f"state-{list(variants).index(label)}"
                    platform, figures, lines = start(home, settings[label])
                    platform.stop()
                    kind = "cold" if n == 0 else f"warm {n}"
                    print(
                        f"{label}, {kind}: to banner {figures['to banner']:.1f} s "
                        f"(banner says {figures['banner figure']:.1f}), "
                        f"to all healthy {figures['to all healthy']:.1f} s"
                    )
                    if not options.quiet:
                        for at, line in lines:
                            print(f"   {at:6.2f}  {line.strip()[:110]}")
                    if n:
                        warm[label].append(figures)
        finally:
            remove = ["git", "-C", str(ROOT), "worktree", "remove", "--force"]
            for checkout in variants.values():
                if checkout != ROOT:
                    subprocess.run([*remove, str(checkout)], check=False)
    print(f"services: {options.services}")
    for label, figures in warm.items():
        summary(label, figures)
    (label, *_), medians = here, {}
    for key in ("to banner", "to all healthy"):
        medians = {variant: statistics.median(f[key] for f in warm[variant]) for variant in variants}
        for ref in options.against:
            new, old = medians[label], medians[ref]
            print(f"{key}: {label} {new:.1f} s against {ref} {old:.1f} s: x{new / old:.2f}")
    print("target: warm start to banner <= 15 s")


if __name__ == "__main__":
    main()

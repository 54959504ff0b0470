"""The supervisor starts the platform's processes at once, but for those that name others in
`after`: each of these starts once those are ready. Real processes (small Python servers),
run by tests/support/supervisor_run.py in a process of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.pipeline.servers import free_port

ROOT = Path(__file__).resolve().parents[2]

# serves 200 on port argv[1], once the file argv[2] exists and argv[3] seconds have passed
SERVE = """
import http.server, os, sys, time
while not os.path.exists(sys.argv[2]):
    time.sleep(0.02)
time.sleep(float(sys.argv[3]))
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Answer).serve_forever()
"""
# makes the file argv[1], then runs on
TOUCH = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(120)"
# writes to argv[2] whether port argv[1] answered when it started, then serves on argv[3]
PROBE = (
    """
import pathlib, socket, sys
answered = socket.socket().connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0
pathlib.Path(sys.argv[2]).write_text("answered" if answered else "refused")
sys.argv[1:] = [sys.argv[3], sys.argv[2], 0]
"""
    + SERVE
)


def python(code: str, *args: object) -> list[str]:
    return [sys.executable, "-c", code, *map(str, args)]


def run_start(folder: Path, processes: list[dict], ready_timeout: float = 30) -> dict:
    spec = {"folder": str(folder), "ready_timeout": ready_timeout, "processes": processes}
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    ran = subprocess.run(
        [sys.executable, "-m", "tests.support.supervisor_run", json.dumps(spec)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout.splitlines()[-1])


def test_processes_with_no_order_between_them_start_together(tmp_path: Path) -> None:
    # The server listed first is ready only once the second has run: one at a time, in
    # order, it would never be.
    port, made = free_port(), tmp_path / "made-by-the-second"
    result = run_start(
        tmp_path,
        [
            {
                "name": "server",
                "argv": python(SERVE, port, made, 0),
                "ready_url": f"http://127.0.0.1:{port}/",
            },
            {"name": "second", "argv": python(TOUCH, made)},
        ],
    )
    assert result["started"] is True, result["said"]
    assert any(line.startswith("   server ready in") for line in result["said"])


def test_a_process_starts_only_once_those_it_is_after_are_ready(tmp_path: Path) -> None:
    # The server takes a second to answer; what is after it must find it answering.
    port, seen, its_port = free_port(), tmp_path / "seen", free_port()
    result = run_start(
        tmp_path,
        [
            {
                "name": "server",
                "argv": python(SERVE, port, tmp_path, 1),
                "ready_url": f"http://127.0.0.1:{port}/",
            },
            {
                "name": "client",
                "argv": python(PROBE, port, seen, its_port),
                "ready_url": f"http://127.0.0.1:{its_port}/",
                "after": ["server"],
            },
        ],
    )
    assert result["started"] is True, result["said"]
    assert seen.read_text() == "answered"


def test_an_after_that_names_no_process_is_refused_before_anything_starts(tmp_path: Path) -> None:
    made = tmp_path / "made"
    result = run_start(tmp_path, [{"name": "client", "argv": python(TOUCH, made), "after": ["MLfow"]}])
    assert result == {"started": None, "said": ["ValueError: no process of that name: client after MLfow"]}
    assert not made.exists()


def test_a_cycle_of_after_stops_the_start_and_says_who_waits_for_whom(tmp_path: Path) -> None:
    made = tmp_path / "made"
    result = run_start(
        tmp_path,
        [
            {"name": "free", "argv": python(TOUCH, made)},
            {"name": "one", "argv": python(TOUCH, tmp_path / "one"), "after": ["two"]},
            {"name": "two", "argv": python(TOUCH, tmp_path / "two"), "after": ["one"]},
        ],
    )
    assert result["started"] is False
    assert "!! nothing can start: one waits for two; two waits for one" in result["said"]
    assert not (tmp_path / "one").exists() and not (tmp_path / "two").exists()


def test_a_process_that_exits_while_starting_stops_the_start_naming_it(tmp_path: Path) -> None:
    port = free_port()
    result = run_start(
        tmp_path,
        [
            {
                "name": "server",
                "argv": python(SERVE, port, tmp_path / "never", 0),
                "ready_url": f"http://127.0.0.1:{port}/",
            },
            {"name": "broken", "argv": python("raise SystemExit(3)"), "ready_url": "http://127.0.0.1:1/"},
        ],
    )
    assert result["started"] is False
    assert f"!! broken exited with 3 while starting; see {tmp_path / 'broken.log'}" in result["said"]

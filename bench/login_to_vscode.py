"""Login to VS Code on the real local platform, and memory per active user.

    python bench/login_to_vscode.py [--runs N]

For N new users (cold: the server starts) and then the same users again (warm: the server
runs), medians of:
  - login -> server ready (the hub's API says so)            HTTP
  - login -> VS Code workbench HTML 200                      HTTP
  - login -> workbench visible with the repo in the Explorer  headless Chromium
    (cold: first visit, empty browser cache; warm: the same browser profile again)
and the PSS of one user's processes (single-user server + code-server and its helpers)
with one browser tab open. Targets on 2 cores: HTML <= 3 s, browser cold <= 6 s,
warm <= 2 s, <= 600 MiB per active user. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from playwright.sync_api import sync_playwright  # noqa: E402

from mlops_ide.processes import process_table  # noqa: E402
from tests.browser_tools import CHROMIUM, CHROMIUM_ARGS, log_in  # noqa: E402
from tests.local_platform import Platform  # noqa: E402
from tests.test_browser import explorer_entries  # noqa: E402


def http_login_to_vscode(platform: Platform, user: str) -> tuple[float, float]:
    platform.password_of(user)  # the account exists before the clock starts
    started = time.perf_counter()
    session = platform.login(user)
    session.get(f"{platform.url}/hub/spawn/{user}", timeout=120)
    while (
        not session.get(f"{platform.url}/hub/api/user", timeout=30)
        .json()
        .get("servers", {})
        .get("", {})
        .get("ready")
    ):
        time.sleep(0.05)
    ready = time.perf_counter() - started
    platform.open_vscode(session, user)
    return ready, time.perf_counter() - started


def browser_login_to_explorer(context, platform: Platform, user: str) -> tuple[float, object]:
    page = context.new_page()
    page.goto(f"{platform.url}/hub/logout")  # a returning user logs in again
    platform.password_of(user)  # the account exists before the clock starts
    started = time.perf_counter()
    log_in(page, platform, user)
    page.wait_for_selector(".monaco-workbench", timeout=120_000)
    assert "dags" in explorer_entries(page)
    return time.perf_counter() - started, page


def pss_mib(session: int) -> float:
    total_kib = 0
    for proc in process_table():
        if proc.session != session:
            continue
        try:
            for line in Path(f"/proc/{proc.pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def server_pid(platform: Platform, user: str) -> int:
    home = str(platform.home / "homes" / user).encode()
    for proc in process_table():
        try:
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"jupyterhub-singleuser" in cmdline and b"HOME=" + home + b"\0" in environ:
            return proc.pid
    raise RuntimeError(f"no server for {user}")


def med(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs

    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(Path(tmp) / "state").start()
        try:
            http_users = [f"http{n}" for n in range(runs)]
            cold_http = [http_login_to_vscode(platform, user) for user in http_users]
            warm_http = [http_login_to_vscode(platform, user) for user in http_users]
            admin = platform.login("admin")
            for user in http_users:  # free the memory before the browser runs
                stop = admin.delete(
                    f"{platform.url}/hub/api/users/{user}/server",
                    headers={"X-XSRFToken": admin.cookies.get("_xsrf")},
                    timeout=60,
                )
                assert stop.status_code in (202, 204), stop.status_code
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                browser_users = [f"web{n}" for n in range(runs)]
                # One browser profile per user: cold is a first visit (empty cache, server
                # starts); warm is the same profile coming back while the server runs.
                contexts = {
                    user: browser.new_context(viewport={"width": 1400, "height": 900})
                    for user in browser_users
                }
                cold_browser, memory = [], []
                for user in browser_users:
                    seconds, page = browser_login_to_explorer(contexts[user], platform, user)
                    cold_browser.append(seconds)
                    time.sleep(5)  # let the extension host and language servers settle
                    memory.append(pss_mib(server_pid(platform, user)))
                    page.close()
                warm_browser, warm_fresh_profile = [], []
                for user in browser_users:
                    seconds, page = browser_login_to_explorer(contexts[user], platform, user)
                    warm_browser.append(seconds)
                    page.close()
                    fresh = browser.new_context(viewport={"width": 1400, "height": 900})
                    seconds, page = browser_login_to_explorer(fresh, platform, user)
                    warm_fresh_profile.append(seconds)
                    fresh.close()
                browser.close()
        finally:
            platform.stop()

    print(f"{runs} users each, cold = new user (server starts), warm = server running; 2 cores")
    print(f"login -> server ready (HTTP), cold:       {med([r for r, _ in cold_http])}")
    print(f"login -> VS Code HTML 200, cold:          {med([v for _, v in cold_http])}")
    print(f"login -> VS Code HTML 200, warm:          {med([v for _, v in warm_http])}   target <= 3 s")
    print(f"login -> workbench + Explorer (Chromium), cold: {med(cold_browser)}   target <= 6 s")
    print(f"login -> workbench + Explorer (Chromium), warm: {med(warm_browser)}   target <= 2 s")
    print(f"  the same, warm server but a new browser profile: {med(warm_fresh_profile)}")
    print(
        f"PSS per active user (server + code-server, one tab): median {statistics.median(memory):.0f} MiB "
        f"(min {min(memory):.0f}, max {max(memory):.0f})   target <= 600 MiB"
    )


if __name__ == "__main__":
    main()

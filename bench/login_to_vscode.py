"""Login to VS Code on the real local platform, memory per active user, and the browser
load as a ratio to a bare code-server.

    python bench/login_to_vscode.py [--runs N]

For N new users (cold: the server starts) and then the same users again (warm: the server
runs), medians of:
  - login -> server ready (the hub's API says so)            HTTP
  - login -> VS Code workbench HTML 200                      HTTP
  - login -> workbench visible with the repo in the Explorer  headless Chromium
    (cold: first visit, empty browser cache; warm: the same browser profile again)
and the PSS of one user's processes (single-user server + code-server and its helpers)
with one browser tab open. Targets on 2 cores: HTML <= 3 s, browser cold <= 6 s,
warm <= 2 s, <= 600 MiB per active user.

Then, in the same Chromium, ours against a bare code-server: the same binary, flags
(--auth none --disable-telemetry), config, settings and built-in extensions
(startup/vscode.py writes them into a home of its own), on a 127.0.0.1 port, no hub nor
proxy, opening a fresh copy of the pipeline repository. Every server already runs (and
has served a page before), so both sides compare like with like; each of the N rounds
measures every kind once, bare and ours in turns (the order reversed every other round,
so the noise of the moment hits both). Clock: from the navigation (bare,
already logged in) or the click on the login form's button (the form already shown and
filled) to the workbench with `dags` in its Explorer.
  - cold: a new browser profile, its HTTP cache empty (already logged in: the hub's
    cookie comes from a login over HTTP in that profile, which fetches none of VS Code's
    files); warm: the same profile again, in a new tab (login form: after logging out).
  - already logged in: open /user/<name>/vscode/; from the login form: submit it.
It prints ours / bare (medians) for the four; goal: login form -> workbench, warm <= 1.15x
bare. And once, the login chain of a warm login form: each document or XHR round trip up
to VS Code's workbench HTML, with its status (the redirects are its 3xx).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from playwright.sync_api import sync_playwright  # noqa: E402

from mlops_ide.machine.state.tools import Tools  # noqa: E402
from mlops_ide.portable import pipeline_repo  # noqa: E402
from mlops_ide.processes import process_table  # noqa: E402
from startup import vscode  # noqa: E402
from tests.support.browser_tools import CHROMIUM, CHROMIUM_ARGS, explorer_entries, log_in  # noqa: E402
from tests.support.local_platform import RunningPlatform, answers, wait_for  # noqa: E402


def http_login_to_vscode(platform: RunningPlatform, user: str) -> tuple[float, float]:
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


def browser_login_to_explorer(context, platform: RunningPlatform, user: str) -> tuple[float, object]:
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


def med(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} s (min {min(values):.2f}, max {max(values):.2f})"


@contextmanager
def bare_code_server(platform: RunningPlatform, user: str, home: Path) -> Iterator[str]:
    """code-server as `user`'s server runs it, minus the hub and the proxy: the same binary,
    flags, config and settings (startup/vscode.py, in `home`), PATH and gallery; a new copy
    of the pipeline repository under the same name. Its URL while it runs."""
    ours = platform.server_environ(user)
    folder = home / Path(ours["CODE_WORKINGDIR"]).name
    pipeline_repo.write_working_copy(ROOT, folder)
    with mock.patch.dict(
        os.environ, {k: ours[k] for k in ("MLOPS_IDE_VSCODE_GALLERY", "MLOPS_IDE_USER_PYTHON")}
    ):
        env = vscode.prepare(home, folder)
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_IDE_", "PYTHON"))}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tools = Tools.load()
    flags = ["--auth", "none", "--disable-telemetry"]  # jupyter-vscode-proxy's
    proc = subprocess.Popen(
        [str(tools.node24), str(tools.code_server), *flags, "--bind-addr", f"127.0.0.1:{port}", str(folder)],
        env={**keep, "HOME": str(home), "PATH": ours["PATH"], **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: answers(url + "healthz"), 60, "the bare code-server")
        yield f"{url}?folder={folder}"  # code-server's own URL for it: no redirect
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def to_explorer(page, started: float) -> float:
    page.wait_for_selector(".monaco-workbench", timeout=120_000)
    assert "dags" in explorer_entries(page)
    return time.perf_counter() - started


def leave(page) -> None:
    page.goto("about:blank")  # VS Code closes its connection: no extension host left waiting
    page.close()


def open_to_explorer(context, url: str) -> float:
    page = context.new_page()
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    seconds = to_explorer(page, started)
    leave(page)
    return seconds


def form_to_explorer(context, platform: RunningPlatform, user: str, responses: list | None = None) -> float:
    page = context.new_page()
    page.goto(f"{platform.url}/hub/logout")
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", platform.password_of(user))
    started = time.perf_counter()
    if responses is not None:  # what, and when after the click
        page.on(
            "response",
            lambda r: responses.append(
                (r.request.method, r.url, r.status, r.request.resource_type, time.perf_counter() - started)
            ),
        )
    page.click("#login_submit")
    seconds = to_explorer(page, started)
    leave(page)
    return seconds


def log_in_over_http(context, platform: RunningPlatform, user: str) -> None:
    """The hub's cookie in this browser profile, without loading a page."""
    context.request.get(f"{platform.url}/hub/login")
    xsrf = next(c["value"] for c in context.cookies() if c["name"] == "_xsrf")
    form = {"username": user, "password": platform.password_of(user), "_xsrf": xsrf}
    response = context.request.post(f"{platform.url}/hub/login", form=form, max_redirects=0)
    assert response.status == 302, response.status


def cold_and_warm(browser, load) -> tuple[float, float]:
    """`load(context)` in a new browser profile, then again in the same one."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        return load(context, cold=True), load(context, cold=False)
    finally:
        context.close()


def ours_and_bare(browser, platform: RunningPlatform, users: list[str], bare_url: str, runs: int):
    """Seconds per kind of load (bare, logged_in, form) -> (cold, warm) lists; the responses
    of the first warm login form."""
    times = {kind: ([], []) for kind in ("bare", "logged_in", "form")}
    chain: list = []

    def bare(context, cold):
        return open_to_explorer(context, bare_url)

    def logged_in(context, cold):
        if cold:
            log_in_over_http(context, platform, user)
        return open_to_explorer(context, f"{platform.url}/user/{user}/vscode/")

    def form(context, cold):
        record = chain if not cold and not chain else None
        return form_to_explorer(context, platform, user, record)

    cold_and_warm(browser, bare)  # it served a page before, as ours did
    for n in range(runs):
        user = users[n % len(users)]
        kinds = [bare, logged_in, form]
        for load in kinds if n % 2 == 0 else reversed(kinds):
            cold, warm = cold_and_warm(browser, load)
            times[load.__name__][0].append(cold)
            times[load.__name__][1].append(warm)
    return times, chain


def login_chain(responses: list, user: str) -> list[tuple[float, int, str, str]]:
    """Document and XHR round trips up to VS Code's workbench HTML (included): seconds from
    the click to the response, status, method, URL."""
    hops = []
    for method, url, status, kind, after in responses:
        if kind not in ("document", "xhr", "fetch"):
            continue
        path, query = urlsplit(url).path, urlsplit(url).query
        hops.append((after, status, method, path + (f"?{query[:50]}" if query else "")))
        if status == 200 and kind == "document" and path == f"/user/{user}/vscode/":
            break
    return hops


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs

    with tempfile.TemporaryDirectory() as tmp:
        platform = RunningPlatform(Path(tmp) / "state").start()
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
                    memory.append(pss_mib(platform.server_pid(user)))
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
                with bare_code_server(platform, browser_users[0], Path(tmp) / "bare") as bare_url:
                    ratios, chain = ours_and_bare(browser, platform, browser_users, bare_url, runs)
                hops = login_chain(chain, browser_users[0])
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
    print("ours / bare code-server (same binary and settings, no hub nor proxy; servers running):")
    for kind, label in (("logged_in", "already logged in"), ("form", "from the login form")):
        for warmth, ours, base in zip(("cold", "warm"), ratios[kind], ratios["bare"], strict=True):
            ratio = statistics.median(ours) / statistics.median(base)
            goal = "   goal <= 1.15x" if kind == "form" and warmth == "warm" else ""
            print(
                f"  {label + ', ' + warmth + ':':26} ours {statistics.median(ours):5.2f} s, "
                f"bare {statistics.median(base):5.2f} s: {ratio:.2f}x{goal}"
            )
    redirects = sum(300 <= status < 400 for _, status, _, _ in hops)
    print(
        f"login chain (from the login form, warm): {len(hops) - 1} round trips, {redirects} of them "
        "redirects, before the workbench HTML:"
    )
    for after, status, method, url in hops:
        print(f"  +{after:.2f} s  {status} {method} {url}")


if __name__ == "__main__":
    main()

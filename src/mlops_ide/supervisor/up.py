"""`make up`: prepare the local state, start the platform in the foreground, stop it all
on Ctrl-C or SIGTERM. The components come from the registry (mlops_ide.machine.components).

    python -m mlops_ide.supervisor.up
"""

from __future__ import annotations

import errno
import getpass
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from mlops_ide import names
from mlops_ide.hub import modes
from mlops_ide.machine import components, os_accounts
from mlops_ide.machine.components import airflow
from mlops_ide.machine.components.base import Inputs, Port
from mlops_ide.machine.state import compile_cache, dag_folder_check
from mlops_ide.machine.state.accounts import component_accounts
from mlops_ide.machine.state.code_copy import install_code
from mlops_ide.machine.state.credentials import ensure_password, ensure_secret
from mlops_ide.machine.state.layout import StateError, accounts_token_file, lock_down, unreachable_ancestor
from mlops_ide.machine.state.remote import ensure_local_remote, install_push_hooks, share_remote
from mlops_ide.machine.state.tools import Tools, write_code_server_shim, write_user_tools
from mlops_ide.processes import become_subreaper, descendants, end_processes
from mlops_ide.settings import Settings, SettingsError, parsers
from mlops_ide.supervisor import users
from mlops_ide.supervisor.runner import Supervisor


def say(line: str) -> None:
    print(line, flush=True)


def check_ports_free(settings: Settings) -> list[str]:
    """One message per port of a running component that something else already listens on."""
    return port_problems(
        port for component in components.running(settings) for port in component.ports(settings)
    )


def port_problems(ports: Iterable[Port]) -> list[str]:
    problems = []
    for port in ports:
        family = socket.AF_INET6 if ":" in port.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the hub and the proxy bind: connections of a previous run that linger in
            # TIME_WAIT do not stop them, so they must not stop us either.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((port.host, port.port))
            except OSError as error:
                reason = "in use" if error.errno == errno.EADDRINUSE else error.strerror
                label = port.what if port.what.startswith(port.setting) else f"{port.setting}, {port.what}"
                problems.append(
                    f"port {port.port} on {port.host} ({label}) is {reason}: stop what uses it "
                    f"(`ss -ltnp | grep :{port.port}`) or set {port.setting} to another port."
                )
    return problems


def prepare_state(settings: Settings, tools: Tools) -> tuple[Inputs, bool, dict[str, str]]:
    """The state folder the hub reads: password, admins' accounts, the components' accounts,
    git remote, code-server on the users' PATH. Returns the components' inputs, whether the first
    admin's password is new, and new admins' passwords."""
    say(f"==> Preparing the state folder {settings.home}")
    accounts = component_accounts(settings) if os_accounts.enabled() else {}
    lock_down(settings, accounts=bool(accounts))
    password, made = ensure_password(settings)
    new_admins = users.ensure_admins(settings, password) if settings.auth == "native" else {}
    if settings.auth == "native":  # the command line removes people through the running hub
        ensure_secret(accounts_token_file(settings), lambda: secrets.token_hex(32))
    if settings.repo_url is None:
        remote, how = ensure_local_remote(settings)
        if accounts:
            share_remote(remote, accounts[names.GIT_ACCOUNT])
        install_push_hooks(settings, tools)
        say(f"   local git remote {remote} ({how})")
    else:
        say(f"   pipeline repository {settings.repo_url} (MLOPS_IDE_REPO_URL)")
    try:
        problem = dag_folder_check.folder_problem(settings)
    except dag_folder_check.Unreadable as why:
        say(f"   could not check the DAG folder {settings.dags_folder}/ now ({why}); Airflow will say")
    else:
        if problem:
            raise StateError(problem)
    write_code_server_shim(settings, tools)
    said = compile_cache.fill_or_say_why(tools.node24, tools.code_server)
    if said:
        say(f"   {said}")
    install_code(settings)
    inputs = Inputs(settings, tools, password, accounts)
    write_user_tools(settings, tools, airflow.dag_settings(inputs))
    return inputs, made, new_admins


def unreachable_for_users(settings: Settings, tools: Tools) -> list[str]:
    """With an account per user, their servers must reach their homes and run the tools."""
    problems = []
    blocked = unreachable_ancestor(settings.home)  # the folder itself: lock_down()
    if blocked:
        problems.append(
            f"MLOPS_IDE_HOME={settings.home} lies below {blocked}, which other accounts cannot pass "
            f"through: set MLOPS_IDE_HOME to a folder users can reach (e.g. /srv/mlops-ide), or "
            f"`chmod o+x {blocked}`."
        )
    for python in (tools.python, tools.airflow_python, tools.pipeline_python, tools.app_python):
        blocked = unreachable_ancestor(python.resolve())  # a venv's python links to its base
        if blocked:
            problems.append(
                f"{python} runs {python.resolve()}, below {blocked}, which other accounts cannot pass "
                "through: run `scripts/install.sh platform` as root again (it installs in /opt/mlops-ide, "
                "on Debian's python3)."
            )
    return problems


def banner(
    settings: Settings,
    password: str,
    made: bool,
    seconds: float,
    new_admins: dict[str, str] | None = None,
    accounts: bool = True,
) -> list[str]:
    where = (
        f"generated{' now' if made else ''}, kept in {settings.home / 'password'}"
        if settings.password is None
        else "from MLOPS_IDE_PASSWORD"
    )
    lines = ["", f"mlops-ide is up in {seconds:.1f} s: {settings.public_url}"]
    if settings.allow_http and not settings.ssl_cert and not parsers.is_loopback(settings.ip):
        lines.append(f"   WARNING: plain HTTP on {settings.ip}: passwords cross the network in clear")
    if settings.auth == "shared":
        lines += [
            f"   log in with any username and the password: {password}",
            f"   ({where}; admins: {', '.join(settings.admin_users)})",
        ]
    elif settings.admin_users:
        first = settings.admin_users[0]
        lines.append(f"   log in as {first} with the password: {password}  ({where})")
        lines += [
            f"   new admin {name}, password: {secret}  (shown once; `make users ARGS='reset {name}'`)"
            for name, secret in (new_admins or {}).items()
            if name != first
        ]
    if settings.auth == "native":
        lines.append(
            "   add people: `make users ARGS='add NAME'` (prints their password), or they sign "
            "up at /hub/signup and an admin approves them at /hub/authorize"
        )
    for component in components.running(settings):
        if component.url is not None:
            page = component.url(settings) + component.link
            if component.page is not None:  # behind the hub's login: through the hub
                page = settings.public_url.rstrip("/") + component.page(settings)
            text = component.banner(settings) if callable(component.banner) else component.banner
            lines.append(f"   {component.title + ':':<8} {page}  {text}".rstrip())
    if not accounts:
        lines.append(
            f"   all servers run as {getpass.getuser()}: users are not kept apart (run as root for one "
            "OS account per user)"
        )
        if {"airflow", "mlflow"} & set(settings.services):
            lines.append(
                "   a pushed DAG can stop MLflow and Airflow's API server and read MLflow's files (as "
                "root each runs as an OS account of its own)"
            )
    lines.append(f"   logs: {settings.home / 'logs'}    stop: Ctrl-C")
    return lines


def main() -> int:
    try:
        settings = modes.load()
        if settings.mode != "local":
            raise SettingsError(
                f"MLOPS_IDE_MODE={settings.mode!r}: `make up` runs the platform on this machine; "
                "unset it (kubernetes mode runs in a cluster: docs/kubernetes.md)."
            )
        tools = Tools.load()
    except (SettingsError, StateError) as problem:
        say(f"mlops-ide: cannot start:\n{problem}")
        return 2
    problems = check_ports_free(settings)
    problems += [
        problem for component in components.running(settings) for problem in component.problems(settings)
    ]
    if os_accounts.enabled():
        problems += unreachable_for_users(settings, tools)
    if problems:
        say("mlops-ide: cannot start:\n" + "\n".join(problems))
        return 2

    os.umask(0o077)  # what the platform and its components write is their owner's alone
    # What a one-shot step leaves running (rootless podman's "pause" process, detached) is
    # re-parented to us, not to init, and ended before the components start.
    become_subreaper()
    try:
        inputs, made, new_admins = prepare_state(settings, tools)
    except StateError as problem:
        say(f"mlops-ide: cannot start:\n{problem}")
        return 2
    password = inputs.password
    running = components.running(settings)
    said: set[str] = set()  # two components may prepare the same thing (the dataset)
    try:
        for component in running:
            for line in component.prepare(inputs) if component.prepare else []:
                if line not in said:
                    said.add(line)
                    say(f"   {line}")
    except StateError as problem:
        say(f"mlops-ide: cannot start:\n{problem}")
        return 2
    finally:
        end_processes(descendants(os.getpid()))
    processes = [process for component in running for process in component.processes(inputs)]

    say("==> Starting the platform")
    started = time.monotonic()
    supervisor = Supervisor(processes, say=say)
    supervisor.handle_signals()
    try:
        if not supervisor.start():
            return 1
        seconds = time.monotonic() - started
        for line in banner(settings, password, made, seconds, new_admins, os_accounts.enabled()):
            say(line)
        supervisor.watch()
    finally:
        say("==> Stopping the platform")
        supervisor.stop()
        say("   stopped")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    sys.exit(main())

"""What Airflow 3 changed in a team's Airflow 2 DAG files, and the fixes, from a maintained
tool: ruff's Airflow rules (AIR301 removed names, AIR302 names moved to a provider, AIR311
and AIR312 names that moved and still work for now), never rules of our own.

    hints(paths)          what ruff says of each file, to print under a failing `file:line: error`
    upgrade(paths, ...)   the fixes applied (import moves, `schedule_interval` -> `schedule`),
                          the diff printed, what is left to do by hand listed

`mlops-ide dag check` and the remote's refusal print the hints; `mlops-ide dag upgrade`
applies them. Standard library only: ruff runs as `python -m ruff` of the interpreter that
runs this (ruff is pinned in requirements/airflow.txt, the environment of both).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RULES = ("AIR301", "AIR302", "AIR311", "AIR312")
RUFF_SECONDS = 60


class UpgradeError(Exception):
    """Bad input or a tool that cannot run: the message says what to do."""


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    code: str
    message: str  # what Airflow 3 changed
    replacement: str | None  # what to write instead (ruff's fix title), when it has one
    fixable: bool

    def hint(self) -> str:
        change = self.message.split(";")[0].rstrip(".")
        return f"line {self.line}: {change}" + (f": {self.replacement}" if self.replacement else "")


def ruff(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """ruff with our rules alone (`--isolated`: the repository's own ruff configuration, if
    any, neither adds rules nor excludes its DAG files)."""
    command = [sys.executable, "-m", "ruff", "check", "--isolated", "--preview", "--select", ",".join(RULES)]
    try:
        return subprocess.run(
            [*command, *args], cwd=cwd, capture_output=True, text=True, timeout=RUFF_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired) as problem:
        raise UpgradeError(f"ruff did not run ({problem}): reinstall with scripts/install.sh") from problem


def findings(paths: list[Path], cwd: Path) -> list[Finding]:
    """What ruff's Airflow rules find in `paths`, in file and line order."""
    if not paths:
        return []
    result = ruff("--output-format", "json", "--exit-zero", *map(str, paths), cwd=cwd)
    try:
        found = json.loads(result.stdout or "[]")
    except ValueError as problem:
        raise UpgradeError(f"ruff answered what we cannot read: {result.stderr.strip()[:300]}") from problem
    if result.returncode:
        raise UpgradeError(f"ruff failed: {result.stderr.strip()[:300]}")
    return sorted(
        (
            Finding(
                path=Path(item["filename"]),
                line=item["location"]["row"],
                code=item["code"],
                message=item["message"],
                replacement=(item.get("fix") or {}).get("message"),
                fixable=bool(item.get("fix")),
            )
            for item in found
        ),
        key=lambda finding: (str(finding.path), finding.line, finding.code),
    )


def hints(paths: list[Path], cwd: Path) -> dict[Path, list[Finding]]:
    """Each file's findings, by its resolved path; a file with none is absent."""
    by_file: dict[Path, list[Finding]] = {}
    for finding in findings(paths, cwd):
        by_file.setdefault(finding.path.resolve(), []).append(finding)
    return by_file


def hint_lines(found: list[Finding], failing_line: int | None, command: str) -> list[str]:
    """The lines under `file:line: error`: what Airflow 3 changed on that line first, then
    elsewhere in the file, then the command that fixes what can be fixed."""
    ordered = sorted(found, key=lambda finding: (finding.line != failing_line, finding.line))
    lines = [f"  Airflow 3: {finding.hint()}" for finding in ordered]
    if any(finding.fixable for finding in found):
        lines.append(f"  fix these: {command}")
    return lines


def uncommitted(paths: list[Path], repo: Path) -> list[Path]:
    """Those of `paths` with changes git has not committed (a new file counts)."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--", *map(str, paths)],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if status.returncode:
        raise UpgradeError(f"git status failed in {repo}: {status.stderr.strip()}")
    changed = {(repo / line[3:].strip('"')).resolve() for line in status.stdout.splitlines() if line}
    return [path for path in paths if path.resolve() in changed]


def upgrade(paths: list[Path], repo: Path, force: bool = False) -> tuple[str, list[Finding]]:
    """Apply ruff's fixes (its unsafe ones too: import moves change which package a name
    comes from) to `paths`; (the unified diff, what is left to do by hand). A file with
    uncommitted changes is refused unless `force`: the upgrade must never cost an edit."""
    if not force:
        dirty = uncommitted(paths, repo)
        if dirty:
            names = ", ".join(str(path.relative_to(repo)) for path in dirty)
            raise UpgradeError(
                f"{names}: uncommitted changes; commit them first (so the upgrade is one commit you "
                "can read and undo), or run again with --force"
            )
    preview = ruff("--fix", "--unsafe-fixes", "--diff", "--exit-zero", *map(str, paths), cwd=repo)
    applied = ruff("--fix", "--unsafe-fixes", "--exit-zero", "--quiet", *map(str, paths), cwd=repo)
    if applied.returncode:
        raise UpgradeError(f"ruff could not apply its fixes: {applied.stderr.strip()[:300]}")
    return preview.stdout, findings(paths, repo)

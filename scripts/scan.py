"""The security scanners of the field, run offline against this repository, held to one list.

    python scripts/scan.py            (in the scanners' virtualenv: MLOPS_IDE_SCANNERS_PYTHON)

- checkov on what `kubectl kustomize deploy` renders, on the Dockerfiles and on the workflows;
- zizmor on the workflows;
- bandit on the Python the platform and the pipeline run (src/, startup/, dags/).

Every finding that stays is listed in accepted-findings.yaml with its reason, by tool, check
id and place (a Kubernetes object, a Dockerfile, a workflow step, a Python file) and how
many times. Anything else is printed as NEW, an entry that no longer matches as STALE, an
entry without a reason as UNEXPLAINED; any of them exits 1. Places are named without line
numbers, so an edit elsewhere in a file does not break the list, but one more
`subprocess.run` in a file that already has some does (the count).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ACCEPTED = ROOT / "accepted-findings.yaml"
PYTHON_SOURCES = ("src", "startup", "dags")
WORKFLOWS = (
    ".github/workflows",
    "pipeline-repo/.github/workflows",
)  # the platform's, the pipeline repository's
Finding = tuple[str, str, str]  # (tool, check id, where)


def run_json(command: list[str], root: Path) -> object:
    result = subprocess.run(command, capture_output=True, text=True, cwd=root, timeout=600)
    if not result.stdout.strip():
        raise SystemExit(f"{command[0]} printed nothing (exit {result.returncode}): {result.stderr[-2000:]}")
    return json.loads(result.stdout)


def checkov(root: Path, target: list[str], framework: str) -> list[Finding]:
    report = run_json(
        [str(BIN / "checkov"), *target, "--framework", framework, "--skip-download", "--quiet", "-o", "json"],
        root,
    )
    reports = report if isinstance(report, list) else [report]
    return [
        ("checkov", check["check_id"], where_checkov(framework, check))
        for one in reports
        # a check skipped by an inline comment is a finding here too: the list is the one place
        for kind in ("failed_checks", "skipped_checks")
        for check in one.get("results", {}).get(kind, [])
    ]


def where_checkov(framework: str, check: dict) -> str:
    if framework == "kubernetes":
        return check["resource"]  # Kind.namespace.name
    if framework == "dockerfile":
        return check["repo_file_path"].lstrip("/")
    return f"{check['repo_file_path'].lstrip('/')}:{check['resource']}"


def rendered_manifests(root: Path, folder: Path) -> Path:
    rendered = folder / "deploy.yaml"
    kubectl = subprocess.run(
        ["kubectl", "kustomize", str(root / "deploy")], capture_output=True, text=True, timeout=120
    )
    if kubectl.returncode != 0:
        raise SystemExit(f"kubectl kustomize deploy failed: {kubectl.stderr}")
    rendered.write_text(kubectl.stdout)
    return rendered


def zizmor(root: Path) -> list[Finding]:
    found = []
    report = run_json([str(BIN / "zizmor"), "--offline", "--no-config", "--format", "json", *WORKFLOWS], root)
    for finding in report:
        location = finding["locations"][0]["symbolic"]
        given = location["key"]["Local"]["given_path"]
        path = Path(given).name if given.startswith(WORKFLOWS[0]) else given  # pipeline-repo/...: in full
        route = ".".join(str(next(iter(step.values()))) for step in location["route"]["route"])
        found.append(("zizmor", finding["ident"], f"{path}:{route}"))
    for folder in WORKFLOWS:
        for workflow in sorted((root / folder).glob("*.y*ml")):  # ignores hide findings
            for _ in re.finditer(r"zizmor:\s*ignore", workflow.read_text()):
                where = workflow.name if folder == WORKFLOWS[0] else str(workflow.relative_to(root))
                found.append(("zizmor", "inline-ignore", where))
    return found


def bandit(root: Path) -> list[Finding]:
    # --ignore-nosec: an inline `# nosec` would hide a finding from this list
    command = [str(BIN / "bandit"), "-r", *PYTHON_SOURCES, "-q", "--ignore-nosec", "-f", "json"]
    report = run_json(command, root)
    return [
        ("bandit", issue["test_id"], os.path.relpath(issue["filename"], ".")) for issue in report["results"]
    ]


def scan(root: Path = ROOT) -> Counter[Finding]:
    """Every finding of the scanners in the checkout at `root`."""
    with tempfile.TemporaryDirectory() as folder:
        manifests = rendered_manifests(root, Path(folder))
        found = [
            *checkov(root, ["-f", str(manifests)], "kubernetes"),
            *checkov(root, ["-d", "images"], "dockerfile"),
            *(found for folder in WORKFLOWS for found in checkov(root, ["-d", folder], "github_actions")),
            *zizmor(root),
            *bandit(root),
        ]
    return Counter(found)


def accepted(path: Path = ACCEPTED) -> tuple[Counter[Finding], list[str]]:
    """The accepted findings, and the entries that give no reason."""
    entries = yaml.safe_load(path.read_text())["accepted"]
    counts: Counter[Finding] = Counter()
    unexplained = []
    for entry in entries:
        key = (entry["tool"], entry["id"], entry["where"])
        counts[key] += entry.get("count", 1)
        if not str(entry.get("reason", "")).strip():
            unexplained.append(" ".join(key))
    return counts, unexplained


def compare(found: Counter[Finding], allowed: Counter[Finding]) -> list[str]:
    problems = [f"NEW    {' '.join(key)} ({count}x)" for key, count in sorted((found - allowed).items())]
    problems += [f"STALE  {' '.join(key)} ({count}x)" for key, count in sorted((allowed - found).items())]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accepted", type=Path, default=ACCEPTED, help="the list of accepted findings")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to scan (default: this one)")
    args = parser.parse_args(argv)
    found = scan(args.root.resolve())
    allowed, unexplained = accepted(args.accepted)
    problems = compare(found, allowed) + [f"UNEXPLAINED {entry}" for entry in unexplained]
    for line in problems:
        print(line)
    print(
        f"{sum(found.values())} findings, {sum(allowed.values())} accepted in {args.accepted.name}, "
        f"{len(problems)} problem(s)"
    )
    if problems:
        print(
            "Fix a NEW finding, or add it to accepted-findings.yaml with the reason it must stay; "
            "remove STALE entries."
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

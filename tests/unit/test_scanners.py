"""The field's security scanners (checkov, zizmor, bandit), offline, held to
accepted-findings.yaml by scripts/scan.py: this checkout passes, and a planted finding, a
dropped entry, a stale one and one without a reason each fail it. Dependabot's config is
checked against its JSON schema (vendored in check-jsonschema)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.local_platform import ROOT

SCANNED = ("deploy", "images", ".github", "src", "startup", "dags", "pipeline-repo")


@pytest.fixture(scope="module")
def scanners_python() -> Path:
    tools = dict(line.split("=", 1) for line in (ROOT / ".tools.env").read_text().splitlines() if "=" in line)
    python = tools.get("MLOPS_IDE_SCANNERS_PYTHON")
    assert python, "the scanners are missing: run scripts/install.sh test"
    return Path(python)


def scan(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), str(ROOT / "scripts" / "scan.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_this_checkout_has_no_finding_that_is_not_accepted_with_a_reason(scanners_python: Path) -> None:
    result = scan(scanners_python)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 problem(s)" in result.stdout


def test_a_new_finding_a_dropped_entry_a_stale_one_and_a_missing_reason_each_fail(
    scanners_python: Path, tmp_path: Path
) -> None:
    checkout = tmp_path / "checkout"
    for name in SCANNED:
        shutil.copytree(ROOT / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
    planted = checkout / "src" / "mlops_ide" / "planted.py"
    planted.write_text(
        "def run(text):\n    return eval(text)  # nosec B307\n"
    )  # an inline skip hides nothing
    hub = checkout / "deploy" / "hub.yaml"
    hub.write_text(
        hub.read_text().replace("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true")
    )
    entries = yaml.safe_load((ROOT / "accepted-findings.yaml").read_text())["accepted"]
    dropped = next(entry for entry in entries if entry["id"] == "CKV_K8S_38")
    entries.remove(dropped)
    entries.append({"tool": "bandit", "id": "B602", "where": "src/mlops_ide/gone.py", "reason": "old"})
    entries.append({"tool": "bandit", "id": "B101", "where": "src/mlops_ide/x.py", "reason": " "})
    accepted = tmp_path / "accepted.yaml"
    accepted.write_text(yaml.safe_dump({"accepted": entries}))

    result = scan(scanners_python, "--root", str(checkout), "--accepted", str(accepted))

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "NEW    bandit B307 src/mlops_ide/planted.py (1x)" in lines
    assert any(line.startswith("NEW    checkov CKV_K8S_20 Deployment.mlops-ide.hub") for line in lines), lines
    assert "NEW    checkov CKV_K8S_38 Deployment.mlops-ide.hub (1x)" in lines
    assert "STALE  bandit B602 src/mlops_ide/gone.py (1x)" in lines
    assert "UNEXPLAINED bandit B101 src/mlops_ide/x.py" in lines


def test_dependabot_keeps_every_pin_current_and_its_config_is_valid(scanners_python: Path) -> None:
    config = ROOT / ".github" / "dependabot.yml"
    check = scanners_python.parent / "check-jsonschema"

    result = subprocess.run(
        [str(check), "--builtin-schema", "vendor.dependabot", str(config)], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout + result.stderr
    updates = {
        update["package-ecosystem"]: update for update in yaml.safe_load(config.read_text())["updates"]
    }
    assert updates["github-actions"]["directory"] == "/"
    assert updates["pip"]["directory"] == "/requirements"
    images = {f"/images/{path.parent.name}" for path in (ROOT / "images").glob("*/Dockerfile")}
    assert set(updates["docker"]["directories"]) == images

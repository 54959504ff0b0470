"""Beyond this machine only safely: a non-loopback address needs HTTPS (or an explicit,
warned-about plain HTTP), and Airflow's log servers listen nowhere."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from mlops_ide.hub.modes import load
from mlops_ide.machine.components import REGISTRY
from mlops_ide.settings import SettingsError
from mlops_ide.supervisor.up import banner
from tests.support.local_platform import RunningPlatform


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "hub.pem", folder / "hub.key"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*request, *names, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_a_public_address_without_https_is_refused() -> None:
    with pytest.raises(SettingsError) as error:
        load({"MLOPS_IDE_IP": "0.0.0.0"})

    assert str(error.value) == (
        "MLOPS_IDE_IP=0.0.0.0 serves the login page beyond this machine over plain HTTP: set "
        "MLOPS_IDE_SSL_CERT and MLOPS_IDE_SSL_KEY (the hub serves HTTPS), or MLOPS_IDE_ALLOW_HTTP=1 "
        "to accept passwords in clear text."
    )


def test_plain_http_on_a_public_address_is_an_opt_in_with_a_warning() -> None:
    settings = load({"MLOPS_IDE_IP": "0.0.0.0", "MLOPS_IDE_ALLOW_HTTP": "1", "MLOPS_IDE_SERVICES": "none"})

    lines = banner(settings, "pw", made=False, seconds=1.0)

    assert any("WARNING: plain HTTP on 0.0.0.0" in line for line in lines)
    assert not any("WARNING" in line for line in banner(load({}), "pw", made=False, seconds=1.0))


def test_a_certificate_needs_its_key(certificate: tuple[Path, Path]) -> None:
    with pytest.raises(SettingsError, match="MLOPS_IDE_SSL_CERT and MLOPS_IDE_SSL_KEY go together"):
        load({"MLOPS_IDE_SSL_CERT": str(certificate[0])})


def test_no_service_listens_beyond_loopback_unless_the_hub_is_told_to() -> None:
    settings = load({"MLOPS_IDE_AIRFLOW_PORT": "18080"})

    listening = {(port.host, port.what) for service in REGISTRY for port in service.ports(settings)}

    assert {host for host, _ in listening} == {"127.0.0.1"}  # Airflow's log servers are gone


def test_the_hub_serves_https_with_the_certificate(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    platform = RunningPlatform(tmp_path / "state", MLOPS_IDE_SSL_CERT=str(cert), MLOPS_IDE_SSL_KEY=str(key))
    try:
        platform.start()
        url = f"https://127.0.0.1:{platform.port}/hub/login"

        assert requests.get(url, verify=str(cert), timeout=10).status_code == 200
        assert f"https://127.0.0.1:{platform.port}/" in platform.log()
        with pytest.raises(requests.ConnectionError):
            requests.get(url.replace("https://", "http://"), timeout=10)
    finally:
        platform.stop()

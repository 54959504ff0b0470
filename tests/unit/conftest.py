"""What several unit-test modules share."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ide.workspace import user_tools
from tests.support.local_platform import ROOT
from tests.support.platform_tools import tools_file_value


@pytest.fixture(scope="module")
def user_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user server's commands (`mlops-ide`, `python`, ...) as `make up` writes them, with
    the platform's code from this checkout."""
    return user_tools.write(
        tmp_path_factory.mktemp("user-bin"),
        Path(tools_file_value("MLOPS_IDE_PIPELINE_PYTHON")),
        Path(tools_file_value("MLOPS_IDE_AIRFLOW_PYTHON")),
        ROOT / "src",
        {"MLOPS_IDE_DATA_ROOT": "/nonexistent/data"},
    )

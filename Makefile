# The two commands of the README: `make up` and `make test`. Both install what is
# missing first (scripts/install.sh) and nothing when nothing changed.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTEST_ARGS ?=

.PHONY: help up test test-unit test-slow images test-images lint bench users

help:
	@echo "make up     install what is missing, then run the platform (Ctrl-C stops it)"
	@echo "make test   install what is missing, then run the linters and every test (but the slow ones)"
	@echo "make test-slow   the tests that wait minutes of real time (idle culling in Chromium); CI runs them"
	@echo "make images   install the container engine (podman), then build the hub, app, serving and"
	@echo "              pipeline images on the stand-in Python base (docs/containers.md)"
	@echo "make test-images   build them (cached), run each, and the workflow DAG with each step in a container"
	@echo "              (MLOPS_IDE_PIPELINE_RUNNER=docker); not part of \`make test\` (the first build takes"
	@echo "              minutes), CI runs it after make test and make test-slow"
	@echo "make bench  run the benchmarks in bench/ and print their figures"
	@echo "make users ARGS='add NAME'   accounts: add NAME [--admin] | reset NAME | list | remove NAME"

up:
	@bash scripts/install.sh platform
	@. ./.tools.env && PYTHONPATH="$(CURDIR)/src:$(CURDIR)" exec "$$MLOPS_IDE_PYTHON" -m mlops_ide.supervisor.up

test:
	@bash scripts/install.sh test
	@. ./.tools.env && "$$MLOPS_IDE_PYTHON" -m ruff check . && "$$MLOPS_IDE_PYTHON" -m ruff format --check . \
		&& "$$MLOPS_IDE_PYTHON" -m pytest -m "not slow and not images" $(PYTEST_ARGS) \
		&& echo "== the pipeline's tests, in its own virtualenv (Keras, PyTorch)" \
		&& "$$MLOPS_IDE_PIPELINE_PYTHON" -m pytest tests/pipeline -W ignore::DeprecationWarning $(PYTEST_ARGS) \
		&& echo "== the app's tests, in its own virtualenv (Streamlit)" \
		&& "$$MLOPS_IDE_APP_PYTHON" -m pytest tests/app $(PYTEST_ARGS)

test-unit:
	@bash scripts/install.sh test
	@. ./.tools.env && "$$MLOPS_IDE_PYTHON" -m pytest -m "not slow and not images" tests/unit $(PYTEST_ARGS)

test-slow:
	@bash scripts/install.sh test
	@. ./.tools.env && "$$MLOPS_IDE_PYTHON" -m pytest -m slow $(PYTEST_ARGS)

images:
	@bash scripts/install.sh images
	@PYTHONPATH="$(CURDIR)/src" python3 -m mlops_ide.supervisor.images build $(IMAGES)

test-images:
	@bash scripts/install.sh test && bash scripts/install.sh images
	@. ./.tools.env && "$$MLOPS_IDE_PYTHON" -m pytest -m images tests/platform/test_images.py tests/platform/test_docker_runner.py $(PYTEST_ARGS)

users:
	@. ./.tools.env && PYTHONPATH="$(CURDIR)/src:$(CURDIR)" exec "$$MLOPS_IDE_PYTHON" -m mlops_ide.supervisor.users $(ARGS)

lint:
	@. ./.tools.env && "$$MLOPS_IDE_PYTHON" -m ruff check . && "$$MLOPS_IDE_PYTHON" -m ruff format --check .

bench:
	@bash scripts/install.sh test
	@. ./.tools.env && export PYTHONPATH="$(CURDIR):$(CURDIR)/src" && \
		for b in bench/startup_sync.py bench/os_accounts.py bench/first_login.py bench/login_to_vscode.py bench/code_server_start.py bench/many_users.py bench/kubernetes_spawn.py bench/dag_parse.py bench/push_to_dag.py bench/push_to_preview.py bench/mlflow_gate.py; do \
			echo "== $$b"; "$$MLOPS_IDE_PYTHON" "$$b" || exit 1; done && \
		echo "== bench/serving.py (in the pipeline's virtualenv)" && \
		"$$MLOPS_IDE_PIPELINE_PYTHON" -W ignore bench/serving.py

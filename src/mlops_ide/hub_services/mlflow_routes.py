"""What MLflow's gate lets through: every route of MLflow 3.17 (as `mlflow server
--static-prefix /services/mlflow` serves it), each with the rule that decides who may call it.

The table is MLflow's own route list (tests/support/mlflow_route_list.py prints it; a test fails on a
route of MLflow's that nobody classified here, and on a route here that MLflow no longer has).
A request is matched against MLflow's route templates, as MLflow will route it; one that
matches none is refused. A route written `/(ajax-)api/...` stands for the two MLflow
registers, `/api/...` for programs and `/ajax-api/...` for its UI. Pure data and matching:
no I/O (the gate, mlops_ide/hub_services/mlflow_gate.py, applies the rules).

The rules, from the most open:
    READ                  anyone with a hub login or token (reads, and searches sent as POST)
    CREATE_EXPERIMENT     anyone, in MLflow's own artifact store (no artifact_location)
    CREATE_RUN            anyone; the run is recorded as the caller's (user_id, mlflow.user)
    CREATE_LOGGED_MODEL   anyone, for a run of their own (source_run_id)
    OWN_RUN               the run's owner: the one run the request names (body or query)
    OWN_LOGGED_MODEL      the owner of the run that made the logged model (`<model_id>`)
    OWN_ARTIFACT          the owner of the run (or logged model) the artifact path is under
    PIPELINE              the pipeline (hub service `pipeline`) and hub admins only: the model
                          registry (versions, aliases such as `champion`), experiments' changes,
                          traces, datasets, scorers, webhooks and the rest MLflow 3 added
    SET_ALIAS             the pipeline and hub admins, but never `champion` on a version a
                          preview made (hub_services/mlflow_champion.py)
The pipeline's rules hold for a preview's tasks (hub service `pipeline-preview`) too, but for
what would move `champion` (mlflow_champion.why_not_from_preview).
    NOBODY                refused to everyone: the AI gateway (it holds third parties' API keys
                          and calls out), the assistant (a shell on MLflow's machine), the UI's
                          usage telemetry
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "/services/mlflow"  # MLflow's --static-prefix: the hub's prefix for the service

READ_ROUTES = """
GET /
GET /(ajax-)api/2.0/mlflow-artifacts/artifacts
GET /(ajax-)api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>
GET /(ajax-)api/2.0/mlflow-artifacts/presigned/<path:artifact_path>
GET /(ajax-)api/2.0/mlflow/artifacts/list
POST /(ajax-)api/2.0/mlflow/artifacts/presigned-download-url
GET /(ajax-)api/2.0/mlflow/experiments/get
GET /(ajax-)api/2.0/mlflow/experiments/get-by-name
GET,POST /(ajax-)api/2.0/mlflow/experiments/search
POST /ajax-api/2.0/mlflow/experiments/search-datasets
GET /(ajax-)api/2.0/mlflow/get-online-trace-details
GET /ajax-api/2.0/mlflow/get-trace-artifact
GET /(ajax-)api/2.0/mlflow/logged-models/<model_id>
GET /(ajax-)api/2.0/mlflow/logged-models/<model_id>/artifacts/directories
GET /ajax-api/2.0/mlflow/logged-models/<model_id>/artifacts/files
POST /(ajax-)api/2.0/mlflow/logged-models/search
GET /(ajax-)api/2.0/mlflow/metrics/get-history
GET /ajax-api/2.0/mlflow/metrics/get-history-bulk
GET /(ajax-)api/2.0/mlflow/metrics/get-history-bulk-interval
GET /(ajax-)api/2.0/mlflow/model-versions/get
GET /(ajax-)api/2.0/mlflow/model-versions/get-download-uri
GET /(ajax-)api/2.0/mlflow/model-versions/search
GET /(ajax-)api/2.0/mlflow/registered-models/alias
GET /(ajax-)api/2.0/mlflow/registered-models/get
GET,POST /(ajax-)api/2.0/mlflow/registered-models/get-latest-versions
GET /(ajax-)api/2.0/mlflow/registered-models/search
GET /(ajax-)api/2.0/mlflow/runs/get
POST /(ajax-)api/2.0/mlflow/runs/search
GET /(ajax-)api/2.0/mlflow/traces
GET /(ajax-)api/2.0/mlflow/traces/<request_id>/info
GET /(ajax-)api/2.0/mlflow/unified-traces
GET /(ajax-)api/2.0/mlflow/webhooks
GET /(ajax-)api/2.0/mlflow/webhooks/<webhook_id>
POST /(ajax-)api/2.0mlflow/experiments/search-datasets
POST /ajax-api/3.0/jobs/search
GET /ajax-api/3.0/jobs/{job_id}
GET /(ajax-)api/3.0/mlflow/datasets/<dataset_id>
GET /(ajax-)api/3.0/mlflow/datasets/<dataset_id>/experiment-ids
GET /(ajax-)api/3.0/mlflow/datasets/<dataset_id>/records
GET,POST /(ajax-)api/3.0/mlflow/datasets/search
GET /ajax-api/3.0/mlflow/get-trace-artifact
GET /(ajax-)api/3.0/mlflow/issues/<issue_id>
POST /(ajax-)api/3.0/mlflow/issues/search
GET /ajax-api/3.0/mlflow/jobs/<job_id>
GET /(ajax-)api/3.0/mlflow/label-schemas/get
GET /(ajax-)api/3.0/mlflow/label-schemas/get-by-name
GET /(ajax-)api/3.0/mlflow/label-schemas/list
GET /(ajax-)api/3.0/mlflow/mcp-servers
GET /(ajax-)api/3.0/mlflow/mcp-servers/endpoints
GET /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}
GET /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/aliases/{alias:path}
GET /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/endpoints
GET /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/endpoints/{endpoint_id}
GET /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/versions
GET /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}
GET /(ajax-)api/3.0/mlflow/prompt-optimization/jobs/<job_id>
GET,POST /(ajax-)api/3.0/mlflow/prompt-optimization/jobs/search
GET /(ajax-)api/3.0/mlflow/review-queues/get
GET /(ajax-)api/3.0/mlflow/review-queues/get-by-name
GET /(ajax-)api/3.0/mlflow/review-queues/items/list
GET /(ajax-)api/3.0/mlflow/review-queues/list
GET /(ajax-)api/3.0/mlflow/scorers/get
GET /(ajax-)api/3.0/mlflow/scorers/list
GET /(ajax-)api/3.0/mlflow/scorers/online-configs
GET /(ajax-)api/3.0/mlflow/scorers/versions
GET /(ajax-)api/3.0/mlflow/server-info
GET /(ajax-)api/3.0/mlflow/traces/<trace_id>
GET /(ajax-)api/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>
GET /(ajax-)api/3.0/mlflow/traces/batchGet
POST /(ajax-)api/3.0/mlflow/traces/batchGetInfos
POST /(ajax-)api/3.0/mlflow/traces/calculate-filter-correlation
GET /(ajax-)api/3.0/mlflow/traces/get
POST /(ajax-)api/3.0/mlflow/traces/metrics
POST /(ajax-)api/3.0/mlflow/traces/search
GET /ajax-api/3.0/mlflow/ui-telemetry
GET /(ajax-)api/3.0/mlflow/workspaces
GET /(ajax-)api/3.0/mlflow/workspaces/<workspace_name>
GET /get-artifact
GET,POST /graphql
GET /health
GET /model-versions/get-artifact
GET /static-files/<path:path>
GET /version
"""

CREATE_EXPERIMENT_ROUTES = """
POST /(ajax-)api/2.0/mlflow/experiments/create
"""

CREATE_RUN_ROUTES = """
POST /(ajax-)api/2.0/mlflow/runs/create
"""

OWN_RUN_ROUTES = """
POST /(ajax-)api/2.0/mlflow/runs/delete
POST /(ajax-)api/2.0/mlflow/runs/delete-tag
POST /(ajax-)api/2.0/mlflow/runs/log-batch
POST /(ajax-)api/2.0/mlflow/runs/log-inputs
POST /(ajax-)api/2.0/mlflow/runs/log-metric
POST /(ajax-)api/2.0/mlflow/runs/log-model
POST /(ajax-)api/2.0/mlflow/runs/log-parameter
POST /(ajax-)api/2.0/mlflow/runs/outputs
POST /(ajax-)api/2.0/mlflow/runs/restore
POST /(ajax-)api/2.0/mlflow/runs/set-tag
POST /(ajax-)api/2.0/mlflow/runs/update
POST /ajax-api/2.0/mlflow/upload-artifact
"""

CREATE_LOGGED_MODEL_ROUTES = """
POST /(ajax-)api/2.0/mlflow/logged-models
"""

OWN_LOGGED_MODEL_ROUTES = """
DELETE,PATCH /(ajax-)api/2.0/mlflow/logged-models/<model_id>
POST /(ajax-)api/2.0/mlflow/logged-models/<model_id>/params
PATCH /(ajax-)api/2.0/mlflow/logged-models/<model_id>/tags
DELETE /(ajax-)api/2.0/mlflow/logged-models/<model_id>/tags/<tag_key>
"""

OWN_ARTIFACT_ROUTES = """
DELETE,PUT /(ajax-)api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>
POST /(ajax-)api/2.0/mlflow-artifacts/mpu/abort/<path:artifact_path>
POST /(ajax-)api/2.0/mlflow-artifacts/mpu/complete/<path:artifact_path>
POST /(ajax-)api/2.0/mlflow-artifacts/mpu/create/<path:artifact_path>
"""

PIPELINE_ROUTES = """
POST /(ajax-)api/2.0/mlflow/artifacts/presigned-upload-url
POST /(ajax-)api/2.0/mlflow/experiments/delete
POST /(ajax-)api/2.0/mlflow/experiments/delete-experiment-tag
POST /(ajax-)api/2.0/mlflow/experiments/restore
POST /(ajax-)api/2.0/mlflow/experiments/set-experiment-tag
POST /(ajax-)api/2.0/mlflow/experiments/update
POST /(ajax-)api/2.0/mlflow/model-versions/create
DELETE /(ajax-)api/2.0/mlflow/model-versions/delete
DELETE /(ajax-)api/2.0/mlflow/model-versions/delete-tag
POST /(ajax-)api/2.0/mlflow/model-versions/set-tag
POST /(ajax-)api/2.0/mlflow/model-versions/transition-stage
PATCH /(ajax-)api/2.0/mlflow/model-versions/update
DELETE /(ajax-)api/2.0/mlflow/registered-models/alias
POST /(ajax-)api/2.0/mlflow/registered-models/create
DELETE /(ajax-)api/2.0/mlflow/registered-models/delete
DELETE /(ajax-)api/2.0/mlflow/registered-models/delete-tag
POST /(ajax-)api/2.0/mlflow/registered-models/rename
POST /(ajax-)api/2.0/mlflow/registered-models/set-tag
PATCH /(ajax-)api/2.0/mlflow/registered-models/update
POST /ajax-api/2.0/mlflow/runs/create-promptlab-run
POST /(ajax-)api/2.0/mlflow/traces
PATCH /(ajax-)api/2.0/mlflow/traces/<request_id>
DELETE,PATCH /(ajax-)api/2.0/mlflow/traces/<request_id>/tags
POST /(ajax-)api/2.0/mlflow/traces/delete-traces
POST /(ajax-)api/2.0/mlflow/traces/link-prompts
POST /(ajax-)api/2.0/mlflow/traces/link-to-run
POST /(ajax-)api/2.0/mlflow/webhooks
DELETE,PATCH /(ajax-)api/2.0/mlflow/webhooks/<webhook_id>
POST /(ajax-)api/2.0/mlflow/webhooks/<webhook_id>/test
POST /ajax-api/3.0/jobs/
PATCH /ajax-api/3.0/jobs/cancel/{job_id}
DELETE /(ajax-)api/3.0/mlflow/datasets/<dataset_id>
POST /(ajax-)api/3.0/mlflow/datasets/<dataset_id>/add-experiments
DELETE,POST /(ajax-)api/3.0/mlflow/datasets/<dataset_id>/records
POST /(ajax-)api/3.0/mlflow/datasets/<dataset_id>/remove-experiments
PATCH /(ajax-)api/3.0/mlflow/datasets/<dataset_id>/tags
DELETE /(ajax-)api/3.0/mlflow/datasets/<dataset_id>/tags/<key>
POST /(ajax-)api/3.0/mlflow/datasets/create
POST /ajax-api/3.0/mlflow/demo/delete
POST /ajax-api/3.0/mlflow/demo/generate
POST /ajax-api/3.0/mlflow/genai/evaluate/invoke
POST /(ajax-)api/3.0/mlflow/issues
PATCH /(ajax-)api/3.0/mlflow/issues/<issue_id>
POST /ajax-api/3.0/mlflow/issues/invoke
PATCH /ajax-api/3.0/mlflow/jobs/cancel/<job_id>
POST /(ajax-)api/3.0/mlflow/label-schemas/create
DELETE /(ajax-)api/3.0/mlflow/label-schemas/delete
PATCH /(ajax-)api/3.0/mlflow/label-schemas/update
POST /(ajax-)api/3.0/mlflow/mcp-servers
DELETE,PATCH /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}
POST /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/aliases
DELETE /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/aliases/{alias:path}
POST /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/endpoints
DELETE,PATCH /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/endpoints/{endpoint_id}
POST /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/tags
DELETE /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/tags/{key:path}
POST /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/versions
DELETE,PATCH /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}
POST /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}/tags
DELETE /(ajax-)api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}/tags/{key:path}
POST /(ajax-)api/3.0/mlflow/prompt-optimization/jobs
DELETE /(ajax-)api/3.0/mlflow/prompt-optimization/jobs/<job_id>
POST /(ajax-)api/3.0/mlflow/prompt-optimization/jobs/<job_id>/cancel
POST /(ajax-)api/3.0/mlflow/review-queues/create
POST /(ajax-)api/3.0/mlflow/review-queues/delete
POST /(ajax-)api/3.0/mlflow/review-queues/get-or-create-user
POST /(ajax-)api/3.0/mlflow/review-queues/items/add
POST /(ajax-)api/3.0/mlflow/review-queues/items/remove
POST /(ajax-)api/3.0/mlflow/review-queues/items/set-status
POST /(ajax-)api/3.0/mlflow/review-queues/update
POST /ajax-api/3.0/mlflow/scorer/invoke
DELETE /(ajax-)api/3.0/mlflow/scorers/delete
PUT /(ajax-)api/3.0/mlflow/scorers/online-config
POST /(ajax-)api/3.0/mlflow/scorers/register
POST /(ajax-)api/3.0/mlflow/traces
POST /(ajax-)api/3.0/mlflow/traces/<trace_id>/assessments
DELETE,PATCH /(ajax-)api/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>
DELETE,PATCH /(ajax-)api/3.0/mlflow/traces/<trace_id>/tags
POST /(ajax-)api/3.0/mlflow/traces/delete-traces
POST /(ajax-)api/3.0/mlflow/workspaces
DELETE,PATCH /(ajax-)api/3.0/mlflow/workspaces/<workspace_name>
POST /v1/traces
"""

SET_ALIAS_ROUTES = """
POST /(ajax-)api/2.0/mlflow/registered-models/alias
"""

NOBODY_ROUTES = """
GET,POST /ajax-api/2.0/mlflow/gateway-proxy
GET,PUT /ajax-api/3.0/mlflow/assistant/config
POST /ajax-api/3.0/mlflow/assistant/message
GET /ajax-api/3.0/mlflow/assistant/providers
GET /ajax-api/3.0/mlflow/assistant/providers/{provider}/health
GET /ajax-api/3.0/mlflow/assistant/providers/{provider}/models
PATCH /ajax-api/3.0/mlflow/assistant/sessions/{session_id}
POST /ajax-api/3.0/mlflow/assistant/sessions/{session_id}/permission
GET /ajax-api/3.0/mlflow/assistant/sessions/{session_id}/stream
POST /ajax-api/3.0/mlflow/assistant/sessions/{session_id}/tool-result
POST /ajax-api/3.0/mlflow/assistant/skills/install
POST /(ajax-)api/3.0/mlflow/gateway/budgets/create
DELETE /(ajax-)api/3.0/mlflow/gateway/budgets/delete
GET /(ajax-)api/3.0/mlflow/gateway/budgets/get
GET /(ajax-)api/3.0/mlflow/gateway/budgets/list
POST /(ajax-)api/3.0/mlflow/gateway/budgets/update
GET /(ajax-)api/3.0/mlflow/gateway/budgets/windows
POST /(ajax-)api/3.0/mlflow/gateway/endpoints/bindings/create
DELETE /(ajax-)api/3.0/mlflow/gateway/endpoints/bindings/delete
GET /(ajax-)api/3.0/mlflow/gateway/endpoints/bindings/list
POST /(ajax-)api/3.0/mlflow/gateway/endpoints/create
DELETE /(ajax-)api/3.0/mlflow/gateway/endpoints/delete
DELETE /(ajax-)api/3.0/mlflow/gateway/endpoints/delete-tag
GET /(ajax-)api/3.0/mlflow/gateway/endpoints/get
GET /(ajax-)api/3.0/mlflow/gateway/endpoints/list
POST /(ajax-)api/3.0/mlflow/gateway/endpoints/models/attach
POST /(ajax-)api/3.0/mlflow/gateway/endpoints/models/detach
POST /(ajax-)api/3.0/mlflow/gateway/endpoints/set-tag
POST /(ajax-)api/3.0/mlflow/gateway/endpoints/update
POST /(ajax-)api/3.0/mlflow/gateway/guardrails/add-to-endpoint
POST /(ajax-)api/3.0/mlflow/gateway/guardrails/create
DELETE /(ajax-)api/3.0/mlflow/gateway/guardrails/delete
GET /(ajax-)api/3.0/mlflow/gateway/guardrails/get
GET /(ajax-)api/3.0/mlflow/gateway/guardrails/list
GET /(ajax-)api/3.0/mlflow/gateway/guardrails/list-for-endpoint
DELETE /(ajax-)api/3.0/mlflow/gateway/guardrails/remove-from-endpoint
PATCH /(ajax-)api/3.0/mlflow/gateway/guardrails/update-config
POST /(ajax-)api/3.0/mlflow/gateway/model-definitions/create
DELETE /(ajax-)api/3.0/mlflow/gateway/model-definitions/delete
GET /(ajax-)api/3.0/mlflow/gateway/model-definitions/get
GET /(ajax-)api/3.0/mlflow/gateway/model-definitions/list
POST /(ajax-)api/3.0/mlflow/gateway/model-definitions/update
GET /ajax-api/3.0/mlflow/gateway/provider-config
GET /ajax-api/3.0/mlflow/gateway/secrets/config
POST /(ajax-)api/3.0/mlflow/gateway/secrets/create
DELETE /(ajax-)api/3.0/mlflow/gateway/secrets/delete
GET /(ajax-)api/3.0/mlflow/gateway/secrets/get
GET /(ajax-)api/3.0/mlflow/gateway/secrets/list
POST /(ajax-)api/3.0/mlflow/gateway/secrets/update
GET /ajax-api/3.0/mlflow/gateway/supported-models
GET /ajax-api/3.0/mlflow/gateway/supported-providers
POST /ajax-api/3.0/mlflow/ui-telemetry
POST /gateway/anthropic/v1/messages
POST /gateway/gemini/v1beta/models/{endpoint_name}:generateContent
POST /gateway/gemini/v1beta/models/{endpoint_name}:streamGenerateContent
POST /gateway/mlflow/v1/chat/completions
GET /gateway/mlflow/v1/models
POST /gateway/openai/v1/chat/completions
POST /gateway/openai/v1/embeddings
POST /gateway/openai/v1/responses
POST /gateway/openai/v1/responses/compact
POST /gateway/proxy/{endpoint_name}/{path:path}
POST /gateway/typesafe/v1/systemone
POST /gateway/{endpoint_name}/mlflow/invocations
"""


RULES = {
    "READ": READ_ROUTES,
    "CREATE_EXPERIMENT": CREATE_EXPERIMENT_ROUTES,
    "CREATE_RUN": CREATE_RUN_ROUTES,
    "CREATE_LOGGED_MODEL": CREATE_LOGGED_MODEL_ROUTES,
    "OWN_RUN": OWN_RUN_ROUTES,
    "OWN_LOGGED_MODEL": OWN_LOGGED_MODEL_ROUTES,
    "OWN_ARTIFACT": OWN_ARTIFACT_ROUTES,
    "PIPELINE": PIPELINE_ROUTES,
    "SET_ALIAS": SET_ALIAS_ROUTES,
    "NOBODY": NOBODY_ROUTES,
}
# When a path matches templates of different rules (MLflow would route it to one of them),
# the strictest applies; two different rules of one rank count as PIPELINE.
RANK = {
    "READ": 0,
    "CREATE_EXPERIMENT": 1,
    "CREATE_RUN": 1,
    "CREATE_LOGGED_MODEL": 1,
    "OWN_RUN": 2,
    "OWN_LOGGED_MODEL": 2,
    "OWN_ARTIFACT": 2,
    "PIPELINE": 3,
    "SET_ALIAS": 4,  # above PIPELINE: a path it shares with another route still gets its check
    "NOBODY": 5,
}
# A template's parameters, as Flask (`<name>`, `<path:name>`) and FastAPI (`{name}`,
# `{name:path}`) match them.
PARAMETER = re.compile(r"<path:\w+>|\{\w+:path\}|<\w+>|\{\w+\}")


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # as MLflow declares it, with the prefix
    rule: str
    pattern: re.Pattern


def expand(line: str) -> list[tuple[str, str]]:
    """`GET,POST /(ajax-)api/2.0/x` -> (method, full template) pairs."""
    methods, template = line.split()
    variants = (
        [template.replace("/(ajax-)api/", "/api/", 1), template.replace("/(ajax-)api/", "/ajax-api/", 1)]
        if template.startswith("/(ajax-)api/")
        else [template]
    )
    return [(method, PREFIX + variant) for method in methods.split(",") for variant in variants]


def pattern_of(template: str) -> re.Pattern:
    parts, at = [], 0
    for parameter in PARAMETER.finditer(template):
        parts.append(re.escape(template[at : parameter.start()]))
        parts.append(".+" if "path" in parameter.group() else "[^/]+")
        at = parameter.end()
    parts.append(re.escape(template[at:]))
    return re.compile("".join(parts))


def routes() -> list[Route]:
    return [
        Route(method, template, rule, pattern_of(template))
        for rule, text in RULES.items()
        for line in text.split("\n")
        if line.strip()
        for method, template in expand(line)
    ]


ROUTES = routes()
BY_METHOD: dict[str, list[Route]] = {}
for _route in ROUTES:
    BY_METHOD.setdefault(_route.method, []).append(_route)


def matching(method: str, path: str) -> list[Route]:
    """The routes MLflow could serve `method path` with (HEAD as GET, as both frameworks do)."""
    method = "GET" if method == "HEAD" else method
    # OPTIONS: Flask answers it for any of its routes, with no handler run
    candidates = ROUTES if method == "OPTIONS" else BY_METHOD.get(method, [])
    return [route for route in candidates if route.pattern.fullmatch(path)]


def rule_for(method: str, path: str) -> str | None:
    """The rule for `method path` (a decoded path, prefix included), or None when MLflow has
    no such route."""
    found = {route.rule for route in matching(method, path)}
    if not found:
        return None
    if method == "OPTIONS":
        return "READ"
    top = max(RANK[rule] for rule in found)
    strictest = {rule for rule in found if RANK[rule] == top}
    return strictest.pop() if len(strictest) == 1 else "PIPELINE"

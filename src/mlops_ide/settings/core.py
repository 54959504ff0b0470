"""The platform's own settings, one row each (services declare theirs in services/).

Order matters: a default may use the values of rows above it. `read_by` other than "hub"
marks variables that another process reads from its environment (the DAGs in Airflow, the
user server's start wrapper, scripts/install.sh, deploy/): they are declared here so that
every MLOPS_IDE_* name has one row, one default and one line of help.
"""

from __future__ import annotations

from mlops_ide.portable import dag_folder
from mlops_ide.settings import CHECKOUT, MODES, Setting
from mlops_ide.settings import parsers as p

K8S = ("kubernetes",)
LOCAL = ("local",)
ONE_TOKEN_FOR_EVERYONE = (
    "in kubernetes mode each user clones and pushes with their own GitHub token: unset it "
    "(one shared token would push as one person for everyone)."
)

PLATFORM = (
    Setting(
        "MLOPS_IDE_MODE",
        "mode",
        "`local`: everything on this machine; `kubernetes`: see docs/kubernetes.md",
        default="local",
        parse=p.choice(MODES, "a mode"),
    ),
    Setting(
        "MLOPS_IDE_HOME",
        "home",
        "all state: hub database, password, homes, bare remote, logs (on Kubernetes: the hub's volume)",
        default=str(CHECKOUT / ".mlops-ide"),
        parse=p.folder,
        default_doc={
            "local": "`.mlops-ide/` in the checkout",
            "kubernetes": "`/srv/jupyterhub` (images/hub)",
        },
    ),
    Setting(
        "MLOPS_IDE_IP",
        "ip",
        "the address the hub is served on",
        default=lambda v: "0.0.0.0" if v["mode"] == "kubernetes" else "127.0.0.1",
        parse=p.ip,
        default_doc={"local": "`127.0.0.1`", "kubernetes": "`0.0.0.0`"},
    ),
    Setting(
        "MLOPS_IDE_SSL_CERT",
        "ssl_cert",
        "the hub's TLS certificate (PEM); with MLOPS_IDE_SSL_KEY the hub serves HTTPS",
        parse=p.readable_file("the certificate (PEM)"),
        modes=LOCAL,
    ),
    Setting(
        "MLOPS_IDE_SSL_KEY",
        "ssl_key",
        "the certificate's private key (PEM)",
        parse=p.readable_file("the certificate's private key (PEM)"),
        modes=LOCAL,
    ),
    Setting(
        "MLOPS_IDE_ALLOW_HTTP",
        "allow_http",
        "`1`: serve plain HTTP on an address beyond this machine (passwords cross the network in clear)",
        default="0",
        parse=p.flag,
        modes=LOCAL,
    ),
    Setting(
        "MLOPS_IDE_PORT",
        "port",
        "the hub's public port; locally the hub's API also uses `PORT+1`, the proxy's `PORT+2`",
        default="8000",
        parse=p.port,
    ),
    Setting(
        "MLOPS_IDE_HUB_PORT",
        "hub_port",
        "the hub's own API port (the proxy and the user pods reach the hub there)",
        default="8081",
        parse=p.port,
        modes=K8S,
    ),
    Setting(
        "MLOPS_IDE_AUTH",
        "auth",
        "`native`: an account and a password per person (JupyterHub's NativeAuthenticator: lockout "
        "after 5 failed logins, 8 characters or more, common passwords refused); `shared`: any "
        "name with one password, for one person on loopback only",
        default="native",
        parse=p.choice(("native", "shared"), "a way to log in"),
        modes=LOCAL,
    ),
    Setting(
        "MLOPS_IDE_PASSWORD",
        "password",
        "the first admin's password (8 characters or more); with `MLOPS_IDE_AUTH=shared`, everyone's",
        parse=p.password,
        modes=LOCAL,
        refused_in={"kubernetes": "kubernetes mode logs users in with GitHub: unset it."},
        secret=True,
        default_doc="generated once",
    ),
    Setting(
        "MLOPS_IDE_ADMIN_USERS",
        "admin_users",
        "comma-separated hub admins (on Kubernetes: GitHub logins)",
        # On Kubernetes names are GitHub logins: no default admin (a stranger could own "admin").
        default=lambda v: "admin" if v["mode"] == "local" else "",
        parse=p.usernames(
            "usernames", "use lowercase letters, digits, '.', '_' or '-', separated by commas."
        ),
        default_doc={"local": "`admin`", "kubernetes": "none"},
    ),
    Setting(
        "MLOPS_IDE_HUB_CONFIG_DIR",
        "hub_config_dir",
        "your own hub configuration: its `*.py` files are read after ours, in name order, with `c` "
        "and `settings` at hand (see `jupyterhub_config.d/README.md`)",
        default=str(CHECKOUT / "jupyterhub_config.d"),
        parse=p.config_folder,
        default_doc="`jupyterhub_config.d/` in the checkout",
    ),
    Setting(
        "MLOPS_IDE_REPO_URL",
        "repo_url",
        "the pipeline repository every user gets (and Airflow's DAG bundle)",
        parse=p.repo_url,
        required="set it to the team's pipeline repository, e.g. https://github.com/your-org/pipelines.git "
        "(required in kubernetes mode).",
        required_in=K8S,
        default_doc={"local": "the local bare remote"},
    ),
    Setting(
        "MLOPS_IDE_REPO_BRANCH", "repo_branch", "branch to clone and track", default="main", parse=p.branch
    ),
    Setting(
        "MLOPS_IDE_DAGS_FOLDER",
        "dags_folder",
        "the repository's folder of DAG files (Airflow's bundle `subdir`; the push check, "
        "`mlops-ide dag` and the hooks follow it): a sub-folder such as `cnn_skin_cancer`, or `.` for "
        "the whole repository (its top-level `.airflowignore` honoured)",
        default=dag_folder.DEFAULT,
        parse=p.dags_folder,
    ),
    Setting(
        "MLOPS_IDE_TRACKED_BRANCH_PUSHERS",
        "tracked_branch_pushers",
        "who may push the tracked branch, whose DAGs and code Airflow runs as the pipeline: hub "
        "names and/or `admins` (every hub admin), comma-separated; others push other branches "
        "(the local remote refuses them, naming who may)",
        default="",
        parse=p.usernames("hub names or `admins`", "list hub names and/or `admins`, separated by commas."),
        modes=LOCAL,
        default_doc="everyone",
    ),
    Setting(
        "MLOPS_IDE_PREVIEW_SLOTS",
        "preview_slots",
        "how many previews (branches `preview/<you>/<topic>`, each run as its own copy of the "
        "DAGs) Airflow runs at once: it gets one more DAG bundle for each; 0 turns previews off",
        default="6",
        parse=p.count(0, 50, "previews"),
    ),
    Setting(
        "MLOPS_IDE_PREVIEWS_PER_PERSON",
        "previews_per_person",
        "how many previews one person may have; a push of one more is refused with the list of "
        "theirs and how to delete one",
        default="3",
        parse=p.count(1, 50, "previews"),
    ),
    Setting(
        "MLOPS_IDE_PREVIEW_DAYS",
        "preview_days",
        "days after its last push when a preview is removed (its branch deleted on the local "
        "remote; its runs' history stays in Airflow)",
        default="7",
        parse=p.count(1, 3650, "days"),
    ),
    Setting(
        "MLOPS_IDE_PREVIEWS_OUTSIDE",
        "previews_outside",
        "1: run previews of `preview/*` branches of MLOPS_IDE_REPO_URL on its host (GitHub) too "
        "(off by default: a preview runs as the pipeline, and there the host, not the platform, says "
        "who may push); turn it on only once the host lets exactly who may push the tracked branch "
        "push `preview/**` (a GitHub ruleset)",
        default="0",
        parse=p.flag,
    ),
    Setting(
        "MLOPS_IDE_PREVIEWS_FILE",
        "previews_file",
        "which branch each preview slot of Airflow runs (mlops_ide/portable/previews.py); the "
        "platform sets it",
        modes=LOCAL,
        read_by="Airflow and user servers",
    ),
    Setting(
        "MLOPS_IDE_GIT_TOKEN",
        "git_token",
        "token for a private HTTPS MLOPS_IDE_REPO_URL, for Airflow's DAG bundle alone (a DAG's "
        "task can read it: give it read access only); no user server gets it, people clone with "
        "their own credentials; git reads it through a credential helper, never from `.git/config`",
        modes=LOCAL,
        refused_in={"kubernetes": ONE_TOKEN_FOR_EVERYONE},
        secret=True,
    ),
    Setting(
        "MLOPS_IDE_GIT_TOKEN_FILE",
        "git_token_file",
        "a file holding that token instead",
        parse=p.existing_file,
        modes=LOCAL,
        refused_in={"kubernetes": ONE_TOKEN_FOR_EVERYONE},
    ),
    Setting(
        "MLOPS_IDE_GIT_USERNAME",
        "git_username",
        "username sent with the token",
        modes=LOCAL,
        default_doc="`x-access-token`",
    ),
    Setting(
        "MLOPS_IDE_SYNC_TIMEOUT",
        "sync_timeout",
        "seconds the startup hook waits for the git remote before it starts the server anyway",
        default="60",
        parse=p.seconds,
    ),
    Setting(
        "MLOPS_IDE_VSCODE_GALLERY",
        "vscode_gallery",
        "where VS Code installs extensions from: `open-vsx` (code-server's own gallery) or `off` "
        "(no calls out, for offline machines; recommendations are then not offered)",
        default="open-vsx",
        parse=p.choice(("open-vsx", "off"), "an extension gallery"),
    ),
)

KUBERNETES = (
    Setting(
        "MLOPS_IDE_HUB_HOST",
        "hub_host",
        "public host name: the Ingress rule and the GitHub callback `https://<host>/hub/oauth_callback`",
        parse=p.host,
        modes=K8S,
        default_doc="required",
    ),
    Setting(
        "MLOPS_IDE_USER_DOMAIN",
        "user_domain",
        "serve each user's server on a host of its own, `<name>.<domain>`, so a page a user serves "
        "cannot script the hub as whoever opens it: set it to MLOPS_IDE_HUB_HOST, with wildcard DNS "
        'and certificate (docs/kubernetes.md, "User servers on their own hosts")',
        parse=p.host,
        modes=K8S,
        default_doc="unset: `https://<host>/user/<name>/`",
    ),
    Setting(
        "MLOPS_IDE_GITHUB_CALLBACK_URL",
        "github_callback_url",
        "set only if the hub is served elsewhere",
        default=lambda v: f"https://{v['hub_host']}/hub/oauth_callback" if v.get("hub_host") else None,
        parse=p.callback_url,
        modes=K8S,
        default_doc="from the host",
    ),
    Setting(
        "MLOPS_IDE_IMAGE_PREFIX",
        "image_prefix",
        "images are `<prefix>-<name>:<tag>` (as .github/workflows/images.yml pushes them)",
        modes=K8S,
        default_doc="required",
    ),
    Setting(
        "MLOPS_IDE_IMAGE_TAG",
        "image_tag",
        "the images' tag: a commit (`sha-<12 hex>`) or version tag; `latest` is refused",
        modes=K8S,
        default_doc="required",
    ),
    Setting(
        "MLOPS_IDE_SINGLEUSER_IMAGE",
        "singleuser_image",
        "the user pods' image, if it differs",
        default=lambda v: (
            f"{v['image_prefix']}-singleuser:{v['image_tag']}"
            if v["image_prefix"] and v["image_tag"]
            else None
        ),
        parse=p.image,
        modes=K8S,
        required="set MLOPS_IDE_IMAGE_PREFIX and MLOPS_IDE_IMAGE_TAG (e.g. ghcr.io/your-org/mlops-ide and "
        "sha-<commit>), or the full image name (required in kubernetes mode).",
        default_doc="`<prefix>-singleuser:<tag>`",
    ),
    Setting(
        "MLOPS_IDE_GITHUB_CLIENT_ID",
        "github_client_id",
        "the OAuth app's client id",
        modes=K8S,
        required="set it to the client id of the team's GitHub OAuth app (required in kubernetes mode).",
    ),
    Setting(
        "MLOPS_IDE_GITHUB_CLIENT_SECRET",
        "github_client_secret",
        "the OAuth app's secret (from `hub-secrets`, key `github-client-secret`)",
        modes=K8S,
        required="set it to the client secret of that OAuth app (from a Kubernetes Secret) "
        "(required in kubernetes mode).",
        secret=True,
    ),
    Setting(
        "MLOPS_IDE_GITHUB_ALLOWED_ORGS",
        "allowed_organizations",
        "who may log in: `org` (any member) or `org:team-slug`, comma-separated",
        default="",
        parse=p.github_orgs,
        modes=K8S,
        default_doc="none",
    ),
    Setting(
        "MLOPS_IDE_GITHUB_ALLOWED_USERS",
        "allowed_users",
        "single GitHub logins; at least one of these two lists is required",
        default="",
        parse=p.usernames("GitHub logins", "list logins separated by commas."),
        modes=K8S,
        default_doc="none",
    ),
    Setting(
        "MLOPS_IDE_GITHUB_REPO_SCOPE",
        "github_repo_scope",
        "what the user's GitHub token may do to repositories: `repo` (an OAuth app and a private "
        "pipelines repository: all the user's repositories), `public_repo` (a public one), `none` "
        "(a GitHub App installed on the pipelines repository alone: the narrowest; see "
        'docs/kubernetes.md, "The user\'s GitHub token")',
        default="repo",
        parse=p.choice(("repo", "public_repo", "none"), "a repository scope"),
        modes=K8S,
    ),
    Setting(
        "MLOPS_IDE_GITHUB_URL",
        "github_url",
        "a GitHub Enterprise Server instead",
        default="https://github.com",
        parse=p.url("https://github.com or your GitHub Enterprise Server"),
        modes=K8S,
    ),
    Setting(
        "JUPYTERHUB_CRYPT_KEY",
        "crypt_key",
        "keeps the users' GitHub tokens encrypted in the hub's database (from `hub-secrets`)",
        parse=p.crypt_key,
        modes=K8S,
        required="the users' GitHub tokens are kept encrypted with it; set it to the output of "
        "`openssl rand -hex 32` (from a Kubernetes Secret).",
        secret=True,
    ),
    Setting(
        "CONFIGPROXY_AUTH_TOKEN",
        "proxy_auth_token",
        "shared by the hub and configurable-http-proxy (from `hub-secrets`)",
        modes=K8S,
        required="the hub and configurable-http-proxy share it; set both from the same Kubernetes "
        "Secret (`openssl rand -hex 32`).",
        secret=True,
    ),
    Setting(
        "MLOPS_IDE_STORAGE_CLASS",
        "storage_class",
        "each user's home volume: its StorageClass",
        modes=K8S,
        default_doc="the cluster's default",
    ),
    Setting(
        "MLOPS_IDE_STORAGE_SIZE",
        "storage_size",
        "each user's home volume: its size",
        default="10Gi",
        parse=p.storage_size,
        modes=K8S,
    ),
    Setting(
        "MLOPS_IDE_IDLE_TIMEOUT",
        "idle_timeout",
        "seconds without activity before a server is stopped (`0`: never); homes and volumes "
        "stay. An open VS Code tab is not activity; typing, a terminal command or a debug session is",
        default="3600",
        parse=p.idle_timeout,
    ),
    Setting(
        "MLOPS_IDE_PRELOADED_SERVERS",
        "preloaded_servers",
        "0: each user server starts as a new process that imports the single-user server itself "
        "(~0.6 CPU-s more per start) instead of being forked from the hub's preloaded server "
        "(startup/preloaded_server.py)",
        default="1",
        parse=p.flag,
        modes=LOCAL,
    ),
    Setting(
        "MLOPS_IDE_HUB_CONNECT_URL",
        "hub_connect_url",
        "how user pods reach the hub's API (the hub's Service)",
        default=lambda v: f"http://hub:{v['hub_port']}",
        parse=p.url("how user pods reach the hub, e.g. http://hub:8081"),
        modes=K8S,
        default_doc="`http://hub:<HUB_PORT>`",
    ),
    Setting(
        "MLOPS_IDE_PROXY_API_URL",
        "proxy_api_url",
        "configurable-http-proxy's API (its own Deployment)",
        default="http://proxy-api:8001",
        parse=p.url("configurable-http-proxy's API, e.g. http://proxy-api:8001"),
        modes=K8S,
    ),
    Setting(
        "MLOPS_IDE_HUB_DB_URL",
        "db_url",
        "the hub's database, e.g. a PostgreSQL URL for large teams",
        default=lambda v: f"sqlite:///{v['home'] / 'jupyterhub.sqlite'}",
        modes=K8S,
        default_doc="SQLite on the hub's volume",
    ),
    Setting(
        "MLOPS_IDE_MLFLOW_URL",
        "mlflow_url",
        "the MLflow server; only MLflow's gate in the hub's pod reaches it, everyone else goes "
        "through the gate (`http://hub:<MLOPS_IDE_MLFLOW_GATE_PORT>/services/mlflow`) with a hub token",
        default="http://mlflow:5000",
        parse=p.url("the MLflow tracking server, e.g. http://mlflow:5000"),
        modes=K8S,
    ),
    Setting(
        "MLOPS_IDE_MLFLOW_GATE_PORT",
        "mlflow_gate_port",
        "MLflow's gate on the hub's pod (the proxy, user pods, serving and the pipeline reach MLflow there)",
        default="8091",
        parse=p.port,
        modes=K8S,
    ),
    Setting(
        "MLOPS_IDE_MLFLOW_PIPELINE_TOKEN",
        "mlflow_pipeline_token",
        "the pipeline's hub token for MLflow (from `hub-secrets`, key `mlflow-pipeline-token`; the same "
        "value in the pipeline namespace's Secret `mlflow-pipeline-token`): the one identity that may "
        "register models and move aliases",
        parse=p.at_least(32, "make one with `openssl rand -hex 32`"),
        modes=K8S,
        required="Airflow's tasks and serving use MLflow with it; make one with `openssl rand -hex 32` and "
        "put it in both Secrets (docs/kubernetes.md, step 3).",
        secret=True,
    ),
    Setting(
        "MLOPS_IDE_MLFLOW_PREVIEW_TOKEN",
        "mlflow_preview_token",
        "a preview's hub token for MLflow, hub service `pipeline-preview`: the pipeline's rights but never "
        "`champion` (from `hub-secrets`, key `mlflow-preview-token`; the same value in the pipeline "
        "namespace's Secret `mlflow-preview-token`, which a preview's pod steps use); needed once "
        "MLOPS_IDE_PREVIEWS_OUTSIDE=1",
        parse=p.at_least(32, "make one with `openssl rand -hex 32`"),
        modes=K8S,
        default_doc="unset",
        secret=True,
    ),
    Setting(
        "MLOPS_IDE_MLFLOW_ARTIFACTS",
        "mlflow_artifacts",
        "MLflow's artifact store, e.g. `s3://bucket/mlflow`",
        modes=K8S,
        read_by="deploy/mlflow.yaml",
        default_doc="none",
    ),
    Setting(
        "MLOPS_IDE_GITHUB_WEBHOOK_SECRET",
        "webhook_secret",
        "the push webhook's secret (from `hub-secrets`, key `webhook-secret`), 16 characters or more",
        parse=p.webhook_secret,
        modes=K8S,
        secret=True,
        default_doc="unset (webhook off)",
    ),
    Setting(
        "MLOPS_IDE_GITHUB_STATUS_TOKEN",
        "status_token",
        "a token that may write the repository's commit statuses (fine-grained: Commit statuses, "
        "read and write): after each push the webhook sets `mlops-ide/airflow` on the commit, "
        "the live DAGs or the import errors, and `mlops-ide/preview` on a preview's, its slot or why "
        "it has none",
        modes=K8S,
        secret=True,
        default_doc="unset (no status)",
    ),
    Setting(
        "MLOPS_IDE_WEBHOOK_PORT",
        "webhook_port",
        "the webhook service's port on the hub's pod (the proxy routes `/services/push-webhook/` there)",
        default="8090",
        parse=p.port,
        modes=K8S,
    ),
    Setting(
        "MLOPS_IDE_AIRFLOW_URL",
        "airflow_url",
        "where the webhook asks Airflow to re-parse",
        default="http://airflow-api-server.mlops-ide-pipeline.svc:8080",
        parse=p.url("Airflow's API server"),
        modes=K8S,
    ),
    Setting(
        "MLOPS_IDE_AIRFLOW_OAUTH_SECRET",
        "airflow_oauth_secret",
        "Airflow's OAuth client secret at the hub (from `hub-secrets`, key `airflow-oauth-secret`; the "
        "same value in the pipeline namespace's Secret `airflow-hub-oauth`): Airflow's UI at "
        "`/services/airflow/`, logged in with the hub",
        parse=p.at_least(32, "make one with `openssl rand -hex 32`"),
        modes=K8S,
        default_doc="unset (Airflow's UI not behind the hub)",
        secret=True,
    ),
    Setting(
        "MLOPS_IDE_AIRFLOW_USERNAME",
        "airflow_username",
        "as whom the webhook logs in to Airflow: an account that may only re-parse (docs/kubernetes.md, 6.)",
        default="mlops-ide-webhook",
        modes=K8S,
    ),
    Setting(
        "MLOPS_IDE_AIRFLOW_PASSWORD",
        "airflow_password",
        "that user's password (from `hub-secrets`, key `airflow-password`)",
        modes=K8S,
        secret=True,
    ),
)

# Read from the environment by other processes; declared here, documented with the rest.
ELSEWHERE = (
    Setting(
        "MLOPS_IDE_TOOLS_DIR",
        "tools_dir",
        "where `scripts/install.sh` keeps the virtualenvs, Node 24, code-server and the proxy, in "
        "folders named by a hash of what built them",
        default="~/.cache/mlops-ide",
        modes=LOCAL,
        read_by="scripts/install.sh",
        default_doc="`/opt/mlops-ide` as root, else `~/.cache/mlops-ide`",
    ),
    Setting(
        "MLOPS_IDE_GIT_EMAIL",
        "git_email",
        "the git email the startup hook gives a user who has none",
        modes=LOCAL,
        read_by="user servers",
        default_doc="`<user>@localhost`",
    ),
    Setting(
        "MLOPS_IDE_USER_PYTHON",
        "user_python",
        "the Python VS Code preselects in user servers (the pipeline's environment); the platform "
        "sets it locally, images/singleuser on Kubernetes",
        read_by="user servers",
    ),
    Setting(
        "MLOPS_IDE_WORKSPACE",
        "workspace",
        "the user's clone of the pipeline repository: its src/ is importable from `python` and the "
        "kernel, and `mlops-ide` finds it; the start wrapper sets it",
        read_by="user servers",
    ),
    Setting(
        "MLOPS_IDE_VSCODE_EARLY",
        "vscode_early",
        "1: the user server starts code-server as its configuration loads, not at the first "
        "request for VS Code; the start wrapper sets it, the server takes it out of its environment",
        read_by="user servers",
    ),
    Setting(
        "MLOPS_IDE_WARM_CHECK",
        "warm_check",
        "0: `mlops-ide dag check` and the pre-push hook import Airflow afresh at each check instead "
        "of asking the user's warm check (workspace/warm_dag_check.py: Airflow imported once, ~0.1 s "
        "a check, ~130 MiB while it lives)",
        default="1",
        parse=p.flag,
        read_by="user servers",
    ),
    Setting(
        "MLOPS_IDE_PUSH_STATUS_FILE",
        "push_status_file",
        "Airflow's verdict on the last push to the tracked branch, which `mlops-ide dag status` "
        "reads; the platform sets it",
        modes=LOCAL,
        read_by="user servers",
    ),
    Setting(
        "MLOPS_IDE_STARTUP_DIR",
        "startup_dir",
        "where the single-user image keeps the startup hook",
        default="/opt/mlops-ide",
        modes=K8S,
        read_by="images/singleuser",
    ),
    Setting(
        "MLOPS_IDE_PIPELINE_RUNNER",
        "pipeline_runner",
        "where the DAGs run each step: `local`, in the pipeline's virtualenv; `docker`, in a container "
        "of the pipeline image on the pipeline account's rootless engine (`make images` first; "
        "docs/containers.md); `kubernetes`, in a pod of it",
        default="local",
        parse=p.choice(("local", "docker"), "a runner of this machine"),
        default_doc={"kubernetes": "`kubernetes` (deploy/airflow/values.yaml)"},
        read_by={"kubernetes": "DAGs"},
    ),
    Setting(
        "MLOPS_IDE_PIPELINE_IMAGE",
        "pipeline_image",
        "the pipeline steps' image (locally: with MLOPS_IDE_PIPELINE_RUNNER=docker)",
        parse=p.image,
        default_doc={
            "local": "`localhost/mlops-ide-pipeline:local` (`make images`)",
            "kubernetes": "`<MLOPS_IDE_IMAGE_PREFIX>-pipeline:<MLOPS_IDE_IMAGE_TAG>`",
        },
        read_by={"kubernetes": "DAGs"},
    ),
    *(
        Setting(name, name.removeprefix("MLOPS_IDE_").lower(), help, read_by="DAGs", **more)
        for name, help, more in (
            (
                "MLOPS_IDE_PIPELINE_PYTHON",
                "the pipeline virtualenv's interpreter for local steps (the platform sets it)",
                {"default": "python3", "modes": LOCAL},
            ),
            (
                "MLOPS_IDE_PIPELINE_NAMESPACE",
                "the pipeline pods' namespace, never the hub's (Airflow may create pods there)",
                {"modes": K8S, "default_doc": "`mlops-ide-pipeline` (deploy/airflow/values.yaml)"},
            ),
            (
                "MLOPS_IDE_PIPELINE_CLAIM",
                "the volume the pipeline pods share at `/data`",
                {"default": "pipeline-data", "modes": K8S},
            ),
            (
                "MLOPS_IDE_DATA_ROOT",
                "the skin-lesion images the workflow trains on",
                {
                    "default": "/data/skin-lesions",
                    "default_doc": {"local": "`MLOPS_IDE_HOME/data/skin-lesions`"},
                },
            ),
            (
                "MLOPS_IDE_WORK_ROOT",
                "where the steps keep each run's arrays",
                {"default": "/data/work", "default_doc": {"local": "`MLOPS_IDE_HOME/pipeline-runs`"}},
            ),
            (
                "MLOPS_IDE_SERVING_URL",
                "the serving API the steps reload and check",
                {"default_doc": {"local": "the local serving", "kubernetes": "`http://serving:8500`"}},
            ),
        )
    ),
)

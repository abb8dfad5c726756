"""deploy/k8s/: each overlay renders, is wired to the engine's real settings, keys, ports and modules, validates
against Kubernetes' (and KEDA's) schemas, and passes checkov.

Rendering needs `kubectl` (its `kubectl kustomize`, no cluster): $KUBECTL, else the one on PATH (Debian's
`kubernetes-client` package is enough: the manifests use only what kubectl 1.20's kustomize knows). checkov is
$CHECKOV, else the one beside this Python, under .tools/checkov/, or on PATH. A missing tool FAILS these tests
and names what to install: nothing here is skipped."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from shared import redis_keys
from shared.observability.probes import DEFAULT_METRICS_PORTS, Health, ProbeServer, service_registry
from shared.persistence.sync import StreamSyncer
from shared.settings import Settings
from tests.unit.test_deploy_defaults import SHUTDOWN_AFTER_DRAIN_S

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
#: The Kubernetes version whose schemas every rendered object must pass (kubernetes-validate, strict).
KUBERNETES_VERSION = "1.30"

NAMESPACE = "order-engine"
#: The services, each a Deployment named as in compose.yaml.
SERVICES = ("api", "quote-stream", "execution-worker", "db-sync", "limit-worker", "sniper-worker")
#: Deployments whose replica count an autoscaler owns in production (a `replicas` would fight it on every apply).
AUTOSCALED = {"api", "execution-worker", "db-sync"}
#: What reads or writes PostgreSQL (DATABASE_URL): everything else must not reach it.
USES_POSTGRES = {"api", "db-sync", "migrate"}
#: Settings the manifests must set for the engine to work in a pod at all.
REQUIRED_CONFIG = {"API_HOST", "API_PORT", "METRICS_HOST", "WORKER_DRAIN_S"}
REQUIRED_SECRETS = {"REDIS_URL", "DATABASE_URL"}
#: Secret keys only KEDA's TriggerAuthentication reads (the engine ignores them; none may shadow a setting).
KEDA_ONLY_SECRET_KEYS = {"REDIS_ADDRESS", "REDIS_USERNAME", "REDIS_PASSWORD"}
#: The uid deploy/Dockerfile runs as.
IMAGE_UID = 10001

#: kustomization fields kubectl 1.20's embedded kustomize already knew: a newer field would render with a new
#: kubectl and fail with the one Debian ships (and many clusters' users have).
OLD_KUSTOMIZE_FIELDS = {
    "apiVersion", "kind", "resources", "bases", "namespace", "commonLabels", "configMapGenerator",
    "secretGenerator", "images", "patchesStrategicMerge", "configurations",
}  # fmt: skip

#: KEDA's trigger metadata is a free map in its CRD's schema, so its keys are checked here, per scaler
#: (keda.sh/docs/2.16/scalers/redis-lists and redis-streams) — a misspelt key would be silently ignored by KEDA.
KEDA_REDIS_COMMON = {"address", "host", "port", "databaseIndex", "enableTLS", "unsafeSsl"} | {
    f"{name}FromEnv" for name in ("address", "host", "port", "username", "password")
}
KEDA_TRIGGER_METADATA = {
    "redis": KEDA_REDIS_COMMON | {"listName", "listLength", "activationListLength"},
    "redis-streams": KEDA_REDIS_COMMON
    | {"stream", "consumerGroup", "pendingEntriesCount", "streamLength", "lagCount", "activationLagCount"},
}
KEDA_REDIS_AUTH_PARAMETERS = {"address", "host", "port", "username", "password", "tls", "ca", "cert", "key"}

#: Test values of each overlay's git-ignored secrets.env.
TEST_SECRETS = {
    "REDIS_URL": "redis://engine:test-password@redis.test.internal:6379/0",
    "DATABASE_URL": "postgresql://engine:test-password@postgres.test.internal:5432/orders",
    "API_KEYS": "",
    "REDIS_ADDRESS": "redis.test.internal:6379",
    "REDIS_USERNAME": "engine",
    "REDIS_PASSWORD": "test-password",
}


# --- tools ------------------------------------------------------------------------------------------------
def _kubectl() -> str:
    found = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not found or not Path(found).is_file():
        pytest.fail(
            "kubectl is needed to render deploy/k8s (no cluster is contacted): "
            "`apt-get install -y kubernetes-client`, or set KUBECTL"
        )
    return found


def _checkov() -> str:
    candidates = [
        os.environ.get("CHECKOV"),
        str(Path(sys.executable).with_name("checkov")),
        str(ROOT / ".tools" / "checkov" / "bin" / "checkov"),
        shutil.which("checkov"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("checkov is needed to scan deploy/k8s: install it in .tools/checkov (see the Makefile) or set CHECKOV")


def _kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)


# --- rendering --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of deploy/k8s with a test secrets.env in each overlay, as an operator would have it."""
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    for overlay in OVERLAYS:
        (copy / "overlays" / overlay / "secrets.env").write_text("".join(f"{k}={v}\n" for k, v in TEST_SECRETS.items()))
    return copy


@pytest.fixture(scope="module")
def rendered(tree) -> dict[str, str]:
    out = {}
    for overlay in OVERLAYS:
        run = _kustomize(tree / "overlays" / overlay)
        assert run.returncode == 0, f"kubectl kustomize overlays/{overlay}: {run.stderr}"
        out[overlay] = run.stdout
    return out


@pytest.fixture(scope="module")
def objects(rendered) -> dict[str, list[dict]]:
    return {overlay: [doc for doc in yaml.safe_load_all(text) if doc] for overlay, text in rendered.items()}


def _of(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


WORKLOADS = ("Deployment", "Job")


def _pods(docs: list[dict]) -> dict[str, dict]:
    """Every pod template: each Deployment's and the migration Job's, by name."""
    return {name: doc["spec"]["template"]["spec"] for kind in WORKLOADS for name, doc in _of(docs, kind).items()}


def _config(docs: list[dict]) -> dict[str, str]:
    (config,) = _of(docs, "ConfigMap").values()
    return config["data"]


def _secret(docs: list[dict]) -> dict[str, str]:
    (secret,) = _of(docs, "Secret").values()
    return {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}


def _settings_env(docs: list[dict]) -> dict[str, str]:
    return {**_config(docs), **_secret(docs)}


def _settings(docs: list[dict]) -> Settings:
    """The Settings a pod of this overlay builds (its ConfigMap and Secret, through pydantic's own validation)."""
    fields = set(Settings.model_fields)
    return Settings(**{key.lower(): value for key, value in _settings_env(docs).items() if key.lower() in fields})


def _compose_commands() -> dict[str, list[str]]:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return {name: service["command"] for name, service in compose["services"].items() if "command" in service}


def _env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return dict(line.split("=", 1) for line in lines)


# --- the kustomize files themselves -----------------------------------------------------------------------
def test_every_kustomization_uses_only_what_kubectl_1_20_knows():
    for path in K8S.rglob("kustomization.yaml"):
        kustomization = yaml.safe_load(path.read_text())
        newer = set(kustomization) - OLD_KUSTOMIZE_FIELDS
        assert not newer, f"{path.relative_to(ROOT)}: {sorted(newer)}"
        for generator in kustomization.get("configMapGenerator", []) + kustomization.get("secretGenerator", []):
            assert "envs" not in generator, f"{path}: `envs` is newer than kubectl 1.20; use `env`"


def test_no_real_secret_is_in_the_repository_and_an_overlay_needs_its_own(tmp_path):
    for overlay in OVERLAYS:  # git ignores them, so neither a commit nor the wheel (hatch) takes them
        path = f"deploy/k8s/overlays/{overlay}/secrets.env"
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path
    assert "deploy/k8s/" in (ROOT / ".dockerignore").read_text().splitlines(), "nor the image's build context"
    tracked = subprocess.run(["git", "ls-files", "deploy/k8s"], cwd=ROOT, capture_output=True, text=True).stdout
    assert not [name for name in tracked.split() if name.endswith("/secrets.env")], tracked
    example = _env_file(K8S / "base" / "secrets.env.example")
    assert set(example) == set(TEST_SECRETS)
    assert "CHANGE-ME" in example["REDIS_URL"] and "CHANGE-ME" in example["DATABASE_URL"]
    # Without its secrets.env an overlay does not render, so placeholders never reach a cluster unnoticed.
    bare = tmp_path / "k8s"
    shutil.copytree(K8S, bare, ignore=shutil.ignore_patterns("secrets.env"))
    for overlay in OVERLAYS:
        run = _kustomize(bare / "overlays" / overlay)
        assert run.returncode != 0 and "secrets.env" in run.stderr, (overlay, run.stderr)


def test_the_scalers_redis_credentials_are_those_of_redis_url():
    for values in (_env_file(K8S / "base" / "secrets.env.example"), TEST_SECRETS):
        url = urlsplit(values["REDIS_URL"])
        assert values["REDIS_ADDRESS"] == f"{url.hostname}:{url.port}"
        assert (values["REDIS_USERNAME"], values["REDIS_PASSWORD"]) == (url.username, url.password)


# --- the wiring of each rendered overlay ------------------------------------------------------------------
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_is_in_the_engines_namespace_and_labelled(objects, overlay):
    for doc in objects[overlay]:
        where = (doc["kind"], doc["metadata"]["name"])
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NAMESPACE
            assert doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert doc["metadata"].get("namespace") == NAMESPACE, where
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == NAMESPACE, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_deployment_per_service_running_the_image_with_composes_command(objects, overlay):
    docs = objects[overlay]
    deployments = _of(docs, "Deployment")
    assert set(deployments) == set(SERVICES)
    commands = _compose_commands()
    images = set()
    for name, pod in _pods(docs).items():
        (container,) = pod["containers"]
        service = name if name in SERVICES else "migrate"
        assert container["command"] == commands[service], name
        module = container["command"][2]
        assert container["command"][:2] == ["python", "-m"] and importlib.util.find_spec(module), name
        images.add(container["image"])
    assert len(images) == 1, images
    if overlay == "production":
        assert re.fullmatch(r"\S+/order-engine@sha256:[0-9a-f]{64}", images.pop())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_readiness_and_liveness_probes_on_real_paths_and_ports(objects, overlay):
    from services.api.app import create_app

    docs = objects[overlay]
    settings = _settings(docs)
    api_paths = create_app(settings).openapi()["paths"]  # what the API serves (as tests/unit/test_docs.py reads it)
    assert "get" in api_paths["/ready"] and "get" in api_paths["/health"]
    # What every worker's probe server answers on /health (503 while starting: a real route, not a 404).
    statuses: list[str] = []
    probes = ProbeServer(service_registry(), Health("probe"))
    probes({"PATH_INFO": "/health"}, lambda status, _headers: statuses.append(status))
    assert statuses and not statuses[0].startswith("404")
    for name, deployment in _of(docs, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
        if name == "api":
            assert (readiness["path"], liveness["path"]) == ("/ready", "/health")
            expected_port = settings.api_port
        else:
            assert readiness["path"] == liveness["path"] == "/health", name
            assert settings.metrics_port is None, "METRICS_PORT set: the probes expect each service's default"
            expected_port = DEFAULT_METRICS_PORTS[name]
        for probe in (readiness, liveness):
            assert ports.get(probe["port"], probe["port"]) == expected_port, (name, probe)
    assert settings.api_host == settings.metrics_host == "0.0.0.0", "probes come from outside the container"
    (service,) = _of(docs, "Service").values()
    api_pod = _of(docs, "Deployment")["api"]["spec"]["template"]
    assert service["spec"]["selector"].items() <= api_pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    (api,) = api_pod["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in api["ports"]}[port["targetPort"]] == settings.api_port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_outlasts_the_workers_drain_and_the_shutdown_after_it(objects, overlay):
    docs = objects[overlay]
    drain_s = _settings(docs).worker_drain_s  # the ConfigMap's WORKER_DRAIN_S, else the Settings default
    assert "WORKER_DRAIN_S" in _config(docs)
    for name, deployment in _of(docs, "Deployment").items():
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > drain_s + SHUTDOWN_AFTER_DRAIN_S, (name, grace, drain_s)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_non_root_read_only_with_nothing_extra(objects, overlay):
    dockerfile_user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "deploy" / "Dockerfile").read_text(), re.MULTILINE)
    assert dockerfile_user and int(dockerfile_user.group(1)) == IMAGE_UID
    for name, pod in _pods(objects[overlay]).items():
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == IMAGE_UID
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False, name
        tmp = {volume["name"] for volume in pod.get("volumes", []) if "emptyDir" in volume}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True and context["runAsUser"] == IMAGE_UID, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert set(resources[bound]) >= {"cpu", "memory"}, (name, bound)
            mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp, f"{name}: /tmp must be an emptyDir on a read-only root"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_come_from_the_configmap_and_keys_from_the_secret(objects, overlay):
    docs = objects[overlay]
    fields = {name.upper() for name in Settings.model_fields}
    config, secret = _config(docs), _secret(docs)
    assert set(config) <= fields, f"not settings: {sorted(set(config) - fields)}"
    assert set(config) >= REQUIRED_CONFIG, sorted(REQUIRED_CONFIG - set(config))
    assert set(secret) - KEDA_ONLY_SECRET_KEYS <= fields
    assert set(secret) >= REQUIRED_SECRETS and "API_KEYS" in secret
    assert not KEDA_ONLY_SECRET_KEYS & fields, "a KEDA-only Secret key now shadows a setting"
    assert not set(config) & set(secret), "a setting in both: which one wins depends on envFrom's order"
    assert "METRICS_PORT" not in config, "each worker's probes use its own default METRICS_PORT"
    _settings(docs)  # every value parses as the engine would parse it
    (config_name,) = _of(docs, "ConfigMap")
    (secret_name,) = _of(docs, "Secret")
    for name, pod in _pods(docs).items():
        (container,) = pod["containers"]
        sources = [(list(source)[0], list(source.values())[0]["name"]) for source in container["envFrom"]]
        assert sources == [("configMapRef", config_name), ("secretRef", secret_name)], name
    if overlay == "production":
        assert _settings(docs).auth_enabled, "production requires API keys"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_engine_pods_reach_redis_and_only_history_readers_reach_postgresql(objects, overlay):
    docs = objects[overlay]
    policies = _of(docs, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    components = {
        name: pod_template["metadata"]["labels"]["app.kubernetes.io/component"]
        for kind in ("Deployment", "Job")
        for name, doc in _of(docs, kind).items()
        for pod_template in [doc["spec"]["template"]]
    }

    def selected(policy: dict) -> set[str]:
        (expression,) = policy["spec"]["podSelector"]["matchExpressions"]
        assert expression["key"] == "app.kubernetes.io/component" and expression["operator"] == "In"
        return {name for name, component in components.items() if component in expression["values"]}

    def egress_ports(policy: dict) -> set[int]:
        (rule,) = policy["spec"]["egress"]
        assert all("ipBlock" in peer for peer in rule["to"]), "external servers: ipBlock egress"
        return {port["port"] for port in rule["ports"]}

    assert selected(policies["allow-redis"]) == set(SERVICES)
    assert 6379 in egress_ports(policies["allow-redis"])
    assert selected(policies["allow-postgres"]) == USES_POSTGRES
    assert egress_ports(policies["allow-postgres"]) == {5432}
    assert urlsplit(TEST_SECRETS["DATABASE_URL"]).port == 5432 and urlsplit(TEST_SECRETS["REDIS_URL"]).port == 6379


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_runs_the_migrate_module(objects, overlay):
    (job,) = _of(objects[overlay], "Job").values()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "shared.persistence.migrate"]
    assert importlib.util.find_spec("shared.persistence.migrate") is not None
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never" and job["spec"]["ttlSecondsAfterFinished"] > 0


def test_dev_runs_one_of_each_without_autoscalers_or_budgets(objects):
    docs = objects["dev"]
    production_only = {"ScaledObject", "TriggerAuthentication", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert not {doc["kind"] for doc in docs} & production_only
    for name, deployment in _of(docs, "Deployment").items():
        assert deployment["spec"].get("replicas", 1) == 1, name


def test_production_scales_the_execution_worker_on_the_real_dramatiq_queue(objects):
    docs = objects["production"]
    scaled = _of(docs, "ScaledObject")["execution-worker"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "execution-worker"
    # Delayed retries (dramatiq's .DQ) and prefetched messages are not in the list: at least one worker always
    # runs to serve the delay queue, and scale-down relies on the drain (terminationGracePeriodSeconds).
    assert scaled["minReplicaCount"] >= 1
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis"
    assert (
        trigger["metadata"]["listName"]
        == redis_keys.dramatiq_queue(0)
        == f"dramatiq:{{p0}}:{redis_keys.EXECUTION_QUEUE}"
    )
    assert trigger["metadata"]["listName"] != redis_keys.dramatiq_delayed(0)
    database = urlsplit(TEST_SECRETS["REDIS_URL"]).path.lstrip("/") or "0"
    assert trigger["metadata"]["databaseIndex"] == database


def test_production_scales_db_sync_on_its_consumer_groups_lag(objects):
    import inspect

    scaled = _of(objects["production"], "ScaledObject")["db-sync"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "db-sync" and scaled["minReplicaCount"] >= 1
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis-streams" and "lagCount" in trigger["metadata"]
    defaults = inspect.signature(StreamSyncer).parameters
    assert trigger["metadata"]["stream"] == redis_keys.events_stream(0) == defaults["stream"].default
    assert trigger["metadata"]["consumerGroup"] == redis_keys.DBSYNC_GROUP == defaults["group"].default


def test_production_autoscalers_budgets_and_replicas(objects):
    docs = objects["production"]
    deployments = _of(docs, "Deployment")
    (hpa,) = _of(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["minReplicas"] >= 2
    for name in AUTOSCALED:
        assert "replicas" not in deployments[name]["spec"], f"{name}: its autoscaler owns the count"
    budgets = _of(docs, "PodDisruptionBudget")
    assert set(budgets) == set(SERVICES)
    for name, budget in budgets.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        assert budget["spec"]["maxUnavailable"] == 1, f"{name}: minAvailable would block drains at one replica"


def test_production_keda_objects_use_real_scaler_fields_and_existing_secret_keys(objects):
    docs = objects["production"]
    (secret_name,) = _of(docs, "Secret")
    secret = _secret(docs)
    auths = _of(docs, "TriggerAuthentication")
    for name, scaled in _of(docs, "ScaledObject").items():
        for trigger in scaled["spec"]["triggers"]:
            allowed = KEDA_TRIGGER_METADATA[trigger["type"]]
            assert set(trigger["metadata"]) <= allowed, (name, sorted(set(trigger["metadata"]) - allowed))
            assert trigger["authenticationRef"]["name"] in auths, name
            assert all(isinstance(value, str) for value in trigger["metadata"].values()), name
    for auth in auths.values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["parameter"] in KEDA_REDIS_AUTH_PARAMETERS
            assert ref["name"] == secret_name and ref["key"] in secret, ref  # the generated (hashed) name


# --- schemas and checkov ----------------------------------------------------------------------------------
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(objects, overlay):
    import kubernetes_validate

    for doc in objects[overlay]:
        if doc["kind"] in KEDA_KINDS:
            continue  # KEDA's own schema, below
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")


def _strict(schema: object) -> object:
    """The schema with every object closed (additionalProperties false where it lists its properties), as
    kubernetes-validate's strict mode does: a misspelt field fails instead of being ignored."""
    if isinstance(schema, dict):
        closed = {key: _strict(value) for key, value in schema.items()}
        if "properties" in closed and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def test_the_keda_objects_validate_against_kedas_schema(objects):
    """KEDA's CRD schemas as cloudcoil-models-keda (PyPI) generates them, vendored in deploy/k8s/schemas/ (the
    package itself is not installed: its pytest plugin breaks pytest without filelock), closed as above."""
    import jsonschema

    keda = [doc for doc in objects["production"] if doc["kind"] in KEDA_KINDS]
    assert {doc["kind"] for doc in keda} == KEDA_KINDS
    for doc in keda:
        raw = json.loads((K8S / "schemas" / f"keda-{doc['kind'].lower()}.json").read_text())
        schema = _strict(raw)
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
        assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {[error.message for error in errors]}"
    # The closing works: a misspelt field of the spec fails.
    scaled = next(doc for doc in keda if doc["kind"] == "ScaledObject")
    misspelt = {**scaled, "spec": {**scaled["spec"], "minReplicas": 1}}
    raw = json.loads((K8S / "schemas" / "keda-scaledobject.json").read_text())
    assert not jsonschema.Draft202012Validator(_strict(raw)).is_valid(misspelt)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_passes_with_only_the_listed_skips(rendered, overlay, tmp_path):
    config = K8S / "overlays" / overlay / ".checkov.yaml"
    skips = yaml.safe_load(config.read_text())["skip-check"]
    reasons = config.read_text()
    for check in skips:  # each skip says why, in a comment right above it
        assert re.search(rf"#\s*{check} \"[^\"]+\": \S", reasons), f"{config}: {check} has no reason"
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(rendered[overlay])
    # --skip-download: checkov otherwise fetches its guideline links from Prisma Cloud (unreachable here).
    command = [_checkov(), "--config-file", str(config), "-f", str(manifest), "--skip-download", "-o", "json"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    report = json.loads(run.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report.get("results", {}).get("failed_checks", [])]
    assert summary["failed"] == 0 and run.returncode == 0, failed
    assert summary["passed"] > 0 and summary["parsing_errors"] == 0, summary

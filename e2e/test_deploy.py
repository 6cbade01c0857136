"""deploy/ and the Dockerfile, offline: `kubectl kustomize` renders the base, every overlay and
the components together; every object validates strictly, built-in kinds with
kubernetes-validate (the Kubernetes API's own schemas), custom resources (KEDA, the Prometheus
operator, KServe) with check-jsonschema against deploy/schemas/ (made by deploy/schemas/extract.py
from the CRDs' published schemas); a manifest with a typo is refused by both, so the schemas
bite. The manifests are checked against what the server declares: every INFERD_* variable and
flag they set is one `inferd serve` reads, every metric they scale on is one it exports. No
cluster and no inferd binary are needed; kubectl and the validators are, and their absence
fails these tests."""

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
SCHEMAS = DEPLOY / "schemas"
BIN = Path(sys.executable).parent
# The API version the built-in kinds are checked against: the kubectl (and kustomize) this
# project renders with is 1.32, and the manifests use nothing newer (PDB
# unhealthyPodEvictionPolicy is GA since 1.31).
KUBERNETES_VERSION = "1.32.0"
BUILTIN = {"v1", "apps/v1", "policy/v1", "autoscaling/v2", "batch/v1"}
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "serving.kserve.io_v1alpha1_clusterservingruntime.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io_v1beta1_inferenceservice.json",
}
OVERLAYS = ["production", "s3-models", "keda", "hpa", "monitoring"]
# The saturation gauges autoscalers read (server totals).
GAUGES = {"inferd_server_queue_depth", "inferd_server_inflight_requests", "inferd_server_instance_utilization"}


def executable(path, what):
    if path is None or not os.access(path, os.X_OK):
        pytest.fail(f"{what} not found ({path}): these tests need it; they do not skip")
    return str(path)


def kubectl():
    return executable(shutil.which("kubectl"), "kubectl (with its built-in kustomize)")


def kubernetes_validate():
    return executable(BIN / "kubernetes-validate", "kubernetes-validate (e2e/requirements.txt)")


def check_jsonschema():
    return executable(BIN / "check-jsonschema", "check-jsonschema (e2e/requirements.txt)")


def render(path):
    done = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, f"kubectl kustomize {path}: {done.stderr}"
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert docs, f"{path} renders nothing"
    return docs


def load(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def validate(docs, tmp_path):
    """Both validators over docs; (ok, output) so that the negative tests can look at failures.
    A document of a kind neither validator knows fails the test outright."""
    builtin = [d for d in docs if d["apiVersion"] in BUILTIN]
    custom = {}
    for d in docs:
        if d["apiVersion"] in BUILTIN:
            continue
        schema = CUSTOM.get((d["apiVersion"], d["kind"]))
        assert schema, f"no validator for {d['apiVersion']} {d['kind']} ({d['metadata'].get('name')})"
        custom.setdefault(schema, []).append(d)
    tmp_path.mkdir(parents=True, exist_ok=True)
    ok, output = True, []
    if builtin:
        f = tmp_path / "builtin.yaml"
        f.write_text(yaml.safe_dump_all(builtin))
        done = subprocess.run([kubernetes_validate(), "--strict", "--kubernetes-version", KUBERNETES_VERSION,
                               str(f)], capture_output=True, text=True)
        text = done.stdout + done.stderr
        passed = len(re.findall(r"^INFO .* passed for resource", text, re.M))
        ok &= done.returncode == 0 and passed == len(builtin) and "WARN" not in text and "ERROR" not in text
        output.append(text)
    for schema, group in custom.items():
        files = []
        for i, d in enumerate(group):
            f = tmp_path / f"{d['kind']}-{i}-{d['metadata'].get('name')}.json"
            f.write_text(json.dumps(d))
            files.append(str(f))
        done = subprocess.run([check_jsonschema(), "--schemafile", str(SCHEMAS / schema), *files],
                              capture_output=True, text=True)
        ok &= done.returncode == 0
        output.append(f"[{schema}] " + done.stdout + done.stderr)
    return ok, "\n".join(output)


def assert_valid(docs, tmp_path):
    ok, output = validate(docs, tmp_path)
    assert ok, output


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def server_container(docs):
    pod = one(docs, "Deployment", "inferd")["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == "inferd")


def config(docs):
    """The inferd-config ConfigMap the server container takes its environment from."""
    _, c = server_container(docs)
    names = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
    assert len(names) == 1 and names[0].startswith("inferd-config-"), names  # generated: hash suffix
    return one(docs, "ConfigMap", names[0])["data"]


# ---- what the server declares (its sources, read as text: no build) -------------------------

def declared_env():
    """Every INFERD_* variable a flag of the CLI reads (`env = "..."` in crates/)."""
    names = set()
    for f in (ROOT / "crates").rglob("*.rs"):
        names |= set(re.findall(r'env\s*=\s*"(INFERD_[A-Z0-9_]+)"', f.read_text()))
    assert "INFERD_MODEL_REPOSITORY" in names, "found no flag declarations in crates/"
    return names


def exported_metrics():
    names = set()
    for f in (ROOT / "crates").rglob("*.rs"):
        names |= set(re.findall(r'"(inferd_[a-z0-9_]+)"', f.read_text()))
    return names


def env_names(container):
    return {e["name"] for e in container.get("env", [])}


def flag_env(arg):
    """--model-name=X -> INFERD_MODEL_NAME (each flag of `inferd serve` also reads that variable)."""
    flag = arg.split("=", 1)[0]
    assert flag.startswith("--"), arg
    return "INFERD_" + flag[2:].upper().replace("-", "_")


def assert_declared(names, where):
    missing = sorted(n for n in names if n.startswith("INFERD_") and n not in declared_env())
    assert not missing, f"{where} sets {missing}, which no flag of the CLI reads (crates/cli)"


# ---- the tools ------------------------------------------------------------------------------

def test_the_tools_are_there():
    done = subprocess.run([kubectl(), "version", "--client"], capture_output=True, text=True)
    assert done.returncode == 0 and "Kustomize Version" in done.stdout, done.stdout + done.stderr
    for tool in (kubernetes_validate(), check_jsonschema()):
        done = subprocess.run([tool, "--version"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_every_overlay_and_component_is_covered():
    assert sorted(p.name for p in (KUBE / "overlays").iterdir()) == sorted(OVERLAYS)
    assert sorted(p.name for p in (KUBE / "components").iterdir()) == sorted(
        ["postgres-state", "s3-models", "keda", "hpa", "monitoring"])
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(CUSTOM.values())


# ---- base -----------------------------------------------------------------------------------

def test_the_base_renders_valid_and_keeps_the_contract(tmp_path):
    docs = render(KUBE / "base")
    assert_valid(docs, tmp_path)
    assert {d["kind"] for d in docs} == {"ServiceAccount", "ConfigMap", "Deployment", "Service",
                                          "PodDisruptionBudget"}
    assert {d["metadata"].get("namespace") for d in docs} == {"models"}  # deploy/batch calls inferd.models
    deployment = one(docs, "Deployment", "inferd")
    assert "replicas" not in deployment["spec"], "the base leaves replicas to overlays and autoscalers"
    pod, c = server_container(docs)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert c["image"].startswith("ghcr.io/inferd/inferd:") and c["args"] == ["serve"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}

    # Probes: the V2 health endpoints on the HTTP port.
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    startup = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
    assert startup >= 120, "model loads get at least two minutes before liveness applies"

    # The flags, as INFERD_* variables the CLI reads; the image's contract values.
    env = config(docs)
    assert all(k.startswith("INFERD_") for k in env), env
    assert_declared(env, "the base ConfigMap")
    assert env["INFERD_HOST"] == "0.0.0.0" and env["INFERD_MODEL_REPOSITORY"] == "/models"
    assert env["INFERD_LOG_FORMAT"] == "json"
    assert not {"INFERD_HTTP_PORT", "INFERD_GRPC_PORT", "INFERD_METRICS_PORT"} & set(env), \
        "ports stay the image's defaults, which the probes and Service name"

    # Lifecycle: the grace period covers --shutdown-grace plus a drain.
    grace = float(env["INFERD_SHUTDOWN_GRACE"])
    assert pod["terminationGracePeriodSeconds"] >= grace + 15, (pod["terminationGracePeriodSeconds"], grace)
    assert pod["enableServiceLinks"] is False, "service links would inject INFERD_SERVICE_*/INFERD_PORT*"

    # Non-root, read-only root filesystem; the image's uid.
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    resources = c["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]

    # Prometheus annotations name the metrics port; Service ports reach the named container ports.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    service = one(docs, "Service", "inferd")
    assert service["spec"]["selector"].items() <= labels.items()
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    assert {n: (p["port"], p["targetPort"]) for n, p in by_name.items()} == \
        {"http": (8000, "http"), "grpc": (8001, "grpc"), "metrics": (8002, "metrics")}
    assert by_name["grpc"]["appProtocol"] == "grpc"
    headless = one(docs, "Service", "inferd-grpc")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["selector"].items() <= labels.items()
    pdb = one(docs, "PodDisruptionBudget", "inferd")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items() and pdb["spec"]["maxUnavailable"] == 1
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]


def writable_paths(pod, container):
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    return [m["mountPath"] for m in container.get("volumeMounts", [])
            if not m.get("readOnly") and "configMap" not in volumes[m["name"]] and "secret" not in volumes[m["name"]]]


@pytest.mark.parametrize("overlay", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_what_the_server_writes_is_on_a_volume(overlay):
    """The root filesystem is read-only: a directory flag must point into a writable mount."""
    docs = render(KUBE / overlay)
    pod, c = server_container(docs)
    env = dict(config(docs), **{e["name"]: e.get("value") for e in c.get("env", [])})
    writable = writable_paths(pod, c)
    assert "/tmp" in writable
    for key in ("INFERD_MODEL_CACHE", "INFERD_STATE_DIR", "INFERD_AUDIT_DIR"):
        if env.get(key):
            assert any(env[key] == w or env[key].startswith(w.rstrip("/") + "/") for w in writable), \
                f"{key}={env[key]} is not under a writable volume ({writable})"


# ---- overlays -------------------------------------------------------------------------------

def test_production_runs_three_replicas_on_a_shared_postgresql_state_store(tmp_path):
    docs = render(KUBE / "overlays" / "production")
    assert_valid(docs, tmp_path)
    assert one(docs, "Deployment", "inferd")["spec"]["replicas"] == 3
    pod, c = server_container(docs)
    state = next(e for e in c["env"] if e["name"] == "INFERD_STATE_URL")
    assert state["valueFrom"]["secretKeyRef"] == {"name": "inferd-state", "key": "url"}  # as deploy/batch
    assert "INFERD_STATE_DIR" not in config(docs), "--state-dir conflicts with --state-url"
    assert_declared(env_names(c), "overlays/production")
    keys = {t["topologyKey"] for t in pod["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


def test_s3_models_mount_configs_whose_sources_are_s3(tmp_path):
    docs = render(KUBE / "overlays" / "s3-models")
    assert_valid(docs, tmp_path)
    pod, c = server_container(docs)
    env = config(docs)
    assert_declared(set(env) | env_names(c), "overlays/s3-models")
    repo = env["INFERD_MODEL_REPOSITORY"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == repo)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = one(docs, "ConfigMap", volume["configMap"]["name"])  # the generated name resolved
    items = volume["configMap"]["items"]
    assert items and all(re.fullmatch(r"[a-z0-9_-]+/config\.toml", i["path"]) for i in items), items
    for item in items:
        model_config = tomllib.loads(configmap["data"][item["key"]])
        assert model_config["source"].startswith("s3://"), item
    # The cache: its own emptyDir, where INFERD_MODEL_CACHE points.
    cache = env["INFERD_MODEL_CACHE"]
    cache_mount = next(m for m in c["volumeMounts"] if cache.startswith(m["mountPath"]))
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == cache_mount["name"])
    # Credentials: the standard AWS variables, the secret ones from a Secret.
    by_name = {e["name"]: e for e in c["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert by_name[key]["valueFrom"]["secretKeyRef"]["name"] == "inferd-s3"
    assert "AWS_REGION" in by_name


def test_keda_scales_the_deployment_on_the_saturation_gauges(tmp_path):
    docs = render(KUBE / "overlays" / "keda")
    assert_valid(docs, tmp_path)
    assert "replicas" not in one(docs, "Deployment", "inferd")["spec"], "KEDA owns replicas"
    scaled = one(docs, "ScaledObject", "inferd")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "inferd"
    assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]
    queries = {}
    for trigger in scaled["triggers"]:
        assert trigger["type"] == "prometheus"
        metadata = trigger["metadata"]
        assert float(metadata["threshold"]) > 0 and metadata["serverAddress"].startswith("http")
        queries[trigger["name"]] = metadata["query"]
    used = {m for q in queries.values() for m in re.findall(r"inferd_[a-z_]+", q)}
    assert {"inferd_server_queue_depth", "inferd_server_inflight_requests"} <= used <= GAUGES, used
    assert used <= exported_metrics(), f"not exported by the server: {used - exported_metrics()}"
    assert all('namespace="models"' in q for q in queries.values())


def test_hpa_scales_on_pods_metrics_the_adapter_rules_serve(tmp_path):
    docs = render(KUBE / "overlays" / "hpa")
    assert_valid(docs, tmp_path)
    assert "replicas" not in one(docs, "Deployment", "inferd")["spec"], "the HPA owns replicas"
    hpa = one(docs, "HorizontalPodAutoscaler", "inferd")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "inferd"}
    names = [m["pods"]["metric"]["name"] for m in hpa["metrics"] if m["type"] == "Pods"]
    assert {"inferd_server_queue_depth", "inferd_server_inflight_requests"} <= set(names) <= GAUGES
    assert set(names) <= exported_metrics()
    # The adapter's rules (a ConfigMap for the adapter's own namespace, outside the kustomization).
    adapter = load(KUBE / "components" / "hpa" / "prometheus-adapter-rules.yaml")
    assert_valid(adapter, tmp_path / "adapter")
    rules = yaml.safe_load(one(adapter, "ConfigMap")["data"]["config.yaml"])["rules"]
    for name in names:
        matching = [r for r in rules
                    if re.fullmatch(re.search(r'__name__=~"([^"]+)"', r["seriesQuery"]).group(1), name)]
        assert len(matching) == 1, f"{name}: {len(matching)} adapter rules"
        rule = matching[0]
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        assert re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"), name) == name
        assert "<<.Series>>" in rule["metricsQuery"] and "<<.LabelMatchers>>" in rule["metricsQuery"]


def test_monitoring_scrapes_the_metrics_port_through_a_servicemonitor(tmp_path):
    docs = render(KUBE / "overlays" / "monitoring")
    assert_valid(docs, tmp_path)
    monitor = one(docs, "ServiceMonitor", "inferd")["spec"]
    service = one(docs, "Service", "inferd")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # The headless gRPC Service is not scraped (different component label).
    assert not monitor["selector"]["matchLabels"].items() <= one(docs, "Service", "inferd-grpc")["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert [(e["port"], e["path"]) for e in monitor["endpoints"]] == [("metrics", "/metrics")]
    assert "metrics" in ports
    annotations = one(docs, "Deployment", "inferd")["spec"]["template"]["metadata"].get("annotations", {})
    assert not any(k.startswith("prometheus.io/") for k in annotations), "scraped twice"


def test_the_components_compose(tmp_path):
    """A user's own overlay: production's state store, S3 models, KEDA and the ServiceMonitor."""
    rel = os.path.relpath(KUBE, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "models",
        "resources": [f"{rel}/base"],
        "components": [f"{rel}/components/{c}" for c in ("postgres-state", "s3-models", "keda", "monitoring")],
    }))
    docs = render(tmp_path)
    assert_valid(docs, tmp_path / "validate")
    assert {d["kind"] for d in docs} >= {"Deployment", "ScaledObject", "ServiceMonitor"}
    _, c = server_container(docs)
    assert {"INFERD_STATE_URL", "AWS_ACCESS_KEY_ID"} <= env_names(c)
    assert "INFERD_MODEL_CACHE" in config(docs)


# ---- KServe ---------------------------------------------------------------------------------

def kserve_docs():
    return {p.name: load(p) for p in sorted((DEPLOY / "kserve").glob("*.yaml"))}


def test_the_kserve_manifests_are_valid(tmp_path):
    files = kserve_docs()
    assert set(files) == {"clusterservingruntime.yaml", "inferenceservice-http.yaml", "inferenceservice-grpc.yaml",
                          "inferenceservice-xgboost.yaml"}
    assert_valid([d for docs in files.values() for d in docs], tmp_path)


def test_the_serving_runtime_starts_inferd_as_kserve_expects():
    runtime = one(kserve_docs()["clusterservingruntime.yaml"], "ClusterServingRuntime", "inferd")["spec"]
    assert runtime["protocolVersions"] == ["v2", "grpc-v2"]
    formats = {f["name"]: f for f in runtime["supportedModelFormats"]}
    assert set(formats) == {"onnx", "xgboost", "lightgbm", "sklearn"}
    # KServe refuses a runtime that auto-selects a format/version at the priority another holds:
    # kserve-tritonserver has onnx/1 at 1.
    assert formats["onnx"]["autoSelect"] and formats["onnx"]["priority"] >= 2
    assert not any(f.get("autoSelect") for n, f in formats.items() if n != "onnx")
    [c] = runtime["containers"]
    assert c["name"] == "kserve-container" and c["image"].startswith("ghcr.io/inferd/inferd:")
    assert c["args"] == ["serve", "--model-name={{.Name}}", "--model-repository=/mnt/models", "--http-port=8080",
                         "--grpc-port=9000", "--host=0.0.0.0"]
    assert_declared({flag_env(a) for a in c["args"][1:]} | env_names(c), "the ClusterServingRuntime")
    # Knative accepts one port per container: the InferenceService chooses (8080 by default).
    assert "ports" not in c
    assert runtime["annotations"] == {"prometheus.kserve.io/port": "8002", "prometheus.kserve.io/path": "/metrics"}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["runAsUser"] == 10001 and sc["readOnlyRootFilesystem"]
    assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


def test_the_inference_services_name_inferd_and_the_grpc_one_exposes_h2c():
    files = kserve_docs()
    for name in ("inferenceservice-http.yaml", "inferenceservice-grpc.yaml", "inferenceservice-xgboost.yaml"):
        isvc = one(files[name], "InferenceService")
        model = isvc["spec"]["predictor"]["model"]
        assert model["runtime"] == "inferd" and re.match(r"(s3|gs)://", model["storageUri"]), name
    http = one(files["inferenceservice-http.yaml"], "InferenceService")
    assert http["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert http["spec"]["predictor"]["model"]["protocolVersion"] == "v2"
    assert http["spec"]["predictor"]["model"]["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    grpc = one(files["inferenceservice-grpc.yaml"], "InferenceService")["spec"]["predictor"]["model"]
    assert grpc["protocolVersion"] == "grpc-v2"
    assert grpc["ports"] == [{"name": "h2c", "containerPort": 9000, "protocol": "TCP"}]


# ---- the validators bite --------------------------------------------------------------------

def keda_docs():
    return [d for d in render(KUBE / "overlays" / "keda") if d["kind"] == "ScaledObject"]


@pytest.mark.parametrize("break_it, expect", [
    (lambda d: d["spec"].__setitem__("minReplicaCont", 1), "minReplicaCont"),  # a typo
    (lambda d: d["spec"].pop("triggers"), "triggers"),  # required
    (lambda d: d["spec"]["triggers"][0].__setitem__("metadata", "query"), "metadata"),  # wrong type
    (lambda d: d["metadata"].__setitem__("lables", {}), "lables"),  # ObjectMeta is strict too
    (lambda d: d.__setitem__("apiVersion", "keda.sh/v1"), "apiVersion"),  # another version's schema
], ids=["typo", "required", "type", "metadata", "version"])
def test_a_broken_scaled_object_is_refused(tmp_path, break_it, expect):
    [scaled] = keda_docs()
    assert validate([scaled], tmp_path / "good")[0]
    break_it(scaled)
    if scaled["apiVersion"] != "keda.sh/v1alpha1":  # no schema for it: validate against v1alpha1's
        f = tmp_path / "so.json"
        f.write_text(json.dumps(scaled))
        done = subprocess.run([check_jsonschema(), "--schemafile", str(SCHEMAS / CUSTOM[("keda.sh/v1alpha1",
                              "ScaledObject")]), str(f)], capture_output=True, text=True)
        ok, output = done.returncode == 0, done.stdout + done.stderr
    else:
        ok, output = validate([scaled], tmp_path / "bad")
    assert not ok and expect in output, output


def test_broken_kserve_and_monitoring_objects_are_refused(tmp_path):
    files = kserve_docs()
    isvc = one(files["inferenceservice-http.yaml"], "InferenceService")
    isvc["spec"]["predictor"]["model"]["storageURI"] = isvc["spec"]["predictor"]["model"].pop("storageUri")
    runtime = one(files["clusterservingruntime.yaml"], "ClusterServingRuntime")
    runtime["spec"]["containers"][0]["argz"] = runtime["spec"]["containers"][0].pop("args")
    monitor = one(render(KUBE / "overlays" / "monitoring"), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    for doc, typo in ((isvc, "storageURI"), (runtime, "argz"), (monitor, "intervall")):
        ok, output = validate([doc], tmp_path / typo)
        assert not ok and typo in output, output


def test_a_broken_builtin_object_is_refused(tmp_path):
    docs = render(KUBE / "base")
    deployment = one(docs, "Deployment", "inferd")
    _, c = server_container([deployment])
    c["readinesProbe"] = c.pop("readinessProbe")
    ok, output = validate([deployment], tmp_path)
    assert not ok and "readinesProbe" in output, output


# ---- the image --------------------------------------------------------------------------------

def dockerfile():
    """(stage name, base image, [(instruction, arguments)]) per stage; continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest.strip(), re.I)
            stages.append((m.group(2), m.group(1), []))
        elif stages:
            stages[-1][2].append((word.upper(), rest.strip()))
    return stages


def dockerignored(path):
    """Whether .dockerignore keeps `path` out of the build context (last matching pattern wins)."""
    ignored = False
    for pattern in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        parts = Path(path).parts
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/")) for p in prefixes):
            ignored = not negate
    return ignored


def test_the_dockerfile_keeps_the_image_contract():
    stages = dockerfile()
    names = [s[0] for s in stages]
    assert names[-1] == "runtime", "`docker build .` builds the plain runtime"
    assert {"builder", "onnxruntime-lib", "base", "onnxruntime", "python", "runtime"} == set(names)
    bases = dict((s[0], s[1]) for s in stages)
    assert bases["builder"].startswith("rust:") and bases["base"].startswith("debian:")
    assert {bases["onnxruntime"], bases["python"], bases["runtime"]} == {"base"}
    builder = next(s[2] for s in stages if s[0] == "builder")
    runs = " ".join(a for i, a in builder if i == "RUN")
    assert "cargo build --release --locked -p inferd" in runs
    # librdkafka's ./configure and make (rdkafka-sys without its cmake feature): C, C++, python3.
    assert {"make", "gcc", "g++", "python3"} <= set(runs.split()), runs
    base = next(s[2] for s in stages if s[0] == "base")
    env = dict(a.split("=", 1) for i, a in base if i == "ENV")
    assert env == {"INFERD_HOST": "0.0.0.0", "INFERD_LOG_FORMAT": "json", "INFERD_MODEL_REPOSITORY": "/models"}
    assert_declared(set(env), "the Dockerfile")
    instructions = {i: a for i, a in base}
    assert instructions["EXPOSE"].split() == ["8000", "8001", "8002"]
    assert instructions["USER"] == "10001:10001"
    assert json.loads(instructions["ENTRYPOINT"]) == ["inferd"] and json.loads(instructions["CMD"]) == ["serve"]
    assert "/v2/health/ready" in instructions["HEALTHCHECK"]
    assert ("COPY", "--from=builder /out/inferd /usr/local/bin/inferd") in base
    assert ("COPY", "examples/models /models") in base
    onnxruntime = next(s[2] for s in stages if s[0] == "onnxruntime")
    ort_env = dict(a.split("=", 1) for i, a in onnxruntime if i == "ENV")
    assert_declared(set(ort_env), "the Dockerfile")
    python = " ".join(a for i, a in next(s[2] for s in stages if s[0] == "python") if i == "RUN")
    assert "python3-numpy" in python
    # The ONNX Runtime version is the one scripts/get_onnxruntime.py (and the ort crate's API) uses.
    script = (ROOT / "scripts" / "get_onnxruntime.py").read_text()
    default = re.search(r'"ONNXRUNTIME_VERSION", "([^"]+)"', script).group(1)
    assert f"ARG ORT_VERSION={default}" in (ROOT / "Dockerfile").read_text()
    # Every file the build copies from the context exists and is not excluded by .dockerignore.
    copied = {src for s in stages for i, a in s[2] if i == "COPY" and "--from=" not in a
              for src in a.split()[:-1] if not src.startswith("--")}
    assert {"Cargo.lock", "crates", "proto", "bench/floor", "examples/models"} <= copied
    for src in sorted(copied):
        assert (ROOT / src).exists(), src
        assert not dockerignored(src), f"{src} is excluded by .dockerignore"
    for heavy in ("target", ".venv", ".git", "e2e", "tests", "fuzz", "bench/serving.py"):
        assert dockerignored(heavy), f"{heavy} would be sent to the build"

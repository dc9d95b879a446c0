"""deploy/kubernetes, checked offline: every overlay builds with `kubectl kustomize`, every
rendered object validates against the Kubernetes 1.32 schemas (kubernetes-validate, strict: an
unknown field fails), checkov's policy scan fails only where deploy/kubernetes/policy-exceptions.yaml
says why, the security rules hold per container, every service's arguments parse with that
service's real command line, the APIServices are exactly the groups virt-api serves, every image
is referenced by digest, and nats.conf of each overlay is accepted by a real nats-server (`-t`)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from services.virt_api.subresources import SUBRESOURCE_GROUP, SUBRESOURCE_VERSIONS
from shared.api.resources import RESOURCES
from shared.service import service_command

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.32.0"  # the minor version virt-api reports and the project's kubectl
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"
OVERLAYS = {"default": DEPLOY, "production": DEPLOY / "overlays" / "production",
            "single-node": DEPLOY / "overlays" / "single-node"}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
# the Python modules a container's first argument may name (the image runs `python3.11 -m <it>`)
SERVICE_MODULES = {f"services.{s}.main" for s in ("virt_api", "virt_controller", "scheduler_bridge",
                                                   "virt_migration", "virt_snapshot", "virt_handler")}
# groups the cluster's own API server serves; virt-api serves them only in the embedded installation
CLUSTER_OWNED_GROUPS = {"", "coordination.k8s.io"}


def _kustomize(path: Path) -> str:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed (kubectl >= 1.27, with kustomize v5, is a prerequisite)")
    proc = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {path.relative_to(ROOT)}: {proc.stderr.strip()}"
    return proc.stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return {name: _kustomize(path) for name, path in OVERLAYS.items()}


@pytest.fixture(scope="module")
def objects(rendered) -> dict[str, list[dict]]:
    return {name: [d for d in yaml.safe_load_all(text) if d] for name, text in rendered.items()}


def _workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in WORKLOADS]


def _containers(workload: dict) -> list[dict]:
    spec = workload["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def _find(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_the_default_build_is_the_production_overlay(rendered):
    assert rendered["default"] == rendered["production"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(objects, overlay):
    kinds = {d["kind"] for d in objects[overlay]}
    assert {"Namespace", "StatefulSet", "Deployment", "DaemonSet", "Service", "APIService", "NetworkPolicy",
            "PodDisruptionBudget", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap"} <= kinds
    errors = []
    for doc in objects[overlay]:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert errors == []


def test_the_schema_validation_rejects_an_unknown_field(objects):
    # the check above is only worth something if strict validation really refuses a misspelling
    deployment = json.loads(json.dumps(_find(objects["production"], "Deployment", "virt-api")))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def _checkov_failures(text: str, tmp_path: Path) -> set[tuple[str, str]]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV.relative_to(ROOT)} is missing: run ./scripts/install.sh")
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(text)
    # offline: no network namespace at all, and checkov told not to fetch its guideline mappings
    proc = subprocess.run(["unshare", "--net", str(CHECKOV), "-f", str(manifest), "--framework", "kubernetes",
                           "-o", "json", "--quiet", "--skip-download"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] >= 40
    return {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}


def _exceptions() -> dict[tuple[str, str], str]:
    doc = yaml.safe_load((DEPLOY / "policy-exceptions.yaml").read_text())
    return {(e["check"], e["resource"]): e["reason"] for e in doc["exceptions"]}


def test_every_policy_exception_has_a_reason():
    for key, reason in _exceptions().items():
        assert len(reason.split()) >= 15, f"{key}: say why"


def test_checkov_fails_nothing_but_the_written_down_exceptions(rendered, tmp_path):
    exceptions = _exceptions()
    seen: set[tuple[str, str]] = set()
    for overlay in ("production", "single-node"):
        failures = _checkov_failures(rendered[overlay], tmp_path)
        assert failures - exceptions.keys() == set(), f"{overlay}: unlisted checkov failures"
        seen |= failures
    assert exceptions.keys() - seen == set(), "exceptions no overlay fails any more: remove them"


def _all(overlay_objects: dict[str, list[dict]]):
    for overlay in ("production", "single-node"):
        for workload in _workloads(overlay_objects[overlay]):
            yield overlay, workload


def test_security_context_of_every_container(objects):
    for overlay, workload in _all(objects):
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, (overlay, name)
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), (overlay, name, key)
        for container in _containers(workload):
            sc = container["securityContext"]
            where = (overlay, name, container["name"])
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert not sc.get("privileged"), where
            if name == "virt-handler":
                # the one written-down exception: user 0 without capabilities (virt-handler.yaml)
                assert sc["runAsUser"] == 0 and sc["runAsNonRoot"] is False, where
            else:
                assert sc["runAsNonRoot"] is True and pod["securityContext"]["runAsNonRoot"] is True, where
                assert pod["securityContext"]["runAsUser"] >= 1000, where


def test_host_paths_and_service_account_tokens_only_where_written_down(objects):
    for overlay, workload in _all(objects):
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        host_paths = sorted(v["hostPath"]["path"] for v in pod.get("volumes", []) if "hostPath" in v)
        assert host_paths == (["/run/libvirt", "/var/lib/kubevirt-py"] if name == "virt-handler" else []), name
        assert pod["automountServiceAccountToken"] is (name in ("virt-snapshot", "virt-api")), name


def test_only_virt_snapshot_and_virt_api_hold_kubernetes_permissions(objects):
    docs = objects["production"]
    bindings = [d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    subjects = {(s["kind"], s["name"]) for b in bindings for s in b["subjects"]}
    assert subjects == {("ServiceAccount", "kubevirt-py-snapshot"), ("ServiceAccount", "kubevirt-api")}
    # virt-api: what every aggregated API server is bound to, nothing else
    api_bindings = {(b["kind"], b["metadata"].get("namespace"), b["roleRef"]["kind"], b["roleRef"]["name"])
                    for b in bindings if any(s["name"] == "kubevirt-api" for s in b["subjects"])}
    assert api_bindings == {("ClusterRoleBinding", None, "ClusterRole", "system:auth-delegator"),
                            ("RoleBinding", "kube-system", "Role", "extension-apiserver-authentication-reader")}
    for b in bindings:
        assert all(s.get("namespace") == "kubevirt" for s in b["subjects"]), b["metadata"]["name"]
    role = _find(docs, "ClusterRole", "kubevirt-py-snapshot")
    assert {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]} == {
        ("snapshot.storage.k8s.io", "volumesnapshots", "get"), ("snapshot.storage.k8s.io", "volumesnapshots", "create"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "delete"),
        ("snapshot.storage.k8s.io", "volumesnapshotclasses", "list"), ("storage.k8s.io", "storageclasses", "get"),
        ("", "persistentvolumeclaims", "get"), ("", "persistentvolumeclaims", "create"),
        ("", "persistentvolumeclaims", "delete")}


@pytest.mark.parametrize("overlay", ["production", "single-node"])
def test_virt_api_is_a_delegating_aggregated_api_server_without_a_ca_key(objects, overlay):
    pod = _find(objects[overlay], "Deployment", "virt-api")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    for arg in ("--authorization-mode=delegated", "--in-cluster", "--tls-cert-file=/etc/kubevirt-py/tls/tls.crt",
                "--tls-private-key-file=/etc/kubevirt-py/tls/tls.key"):
        assert arg in args, arg
    mounted = {(v["secret"]["secretName"], i["key"]) for v in pod["volumes"] if "secret" in v
               for i in v["secret"]["items"]}
    mounted |= {(s["secret"]["name"], i["key"]) for v in pod["volumes"] if "projected" in v
                for s in v["projected"]["sources"] for i in s["secret"]["items"]}
    assert mounted == {("virt-api-tls", "tls.crt"), ("virt-api-tls", "tls.key"),
                       ("nats-client-virt-api", "credentials.json"), ("kubevirt-py-ca", "ca.crt")}


@pytest.mark.parametrize("overlay", ["production", "single-node"])
def test_every_image_is_referenced_by_digest(objects, overlay):
    images = [c["image"] for w in _workloads(objects[overlay]) for c in _containers(w)]
    assert len(images) == 7
    for image in images:
        assert re.fullmatch(r"[a-z0-9./-]+@sha256:[0-9a-f]{64}", image), image


def test_service_arguments_parse_with_each_services_command_line(objects):
    import importlib

    for overlay, workload in _all(objects):
        for container in _containers(workload):
            if container["name"] == "nats":
                continue
            module, *args = container["args"]
            assert module in SERVICE_MODULES, module
            cli = service_command(importlib.import_module(module).SERVICE)
            # $(VAR) is expanded by the kubelet from the container's env; any value parses the same
            env = {e["name"] for e in container.get("env", [])}
            for arg in args:
                for var in re.findall(r"\$\((\w+)\)", arg):
                    assert var in env, (workload["metadata"]["name"], arg)
            with cli.make_context(module, list(args)) as ctx:
                assert ctx.params["nats_servers"], (overlay, module)


def test_store_replicas_and_nats_urls_follow_the_nats_replicas(objects):
    for overlay, (servers, replicas) in {"production": (3, "3"), "single-node": (1, "1")}.items():
        docs = objects[overlay]
        assert _find(docs, "StatefulSet", "nats")["spec"]["replicas"] == servers
        for workload in _workloads(docs):
            if workload["metadata"]["name"] == "nats":
                continue
            args = workload["spec"]["template"]["spec"]["containers"][0]["args"]
            assert [a for a in args if a.startswith("--nats=")] == [
                f"--nats=tls://nats-{i}.nats-headless.kubevirt.svc:4222" for i in range(servers)]
            assert f"--store-replicas={replicas}" in args
            if workload["kind"] == "Deployment":
                assert workload["spec"]["replicas"] == (2 if overlay == "production" else 1)


def test_api_services_are_exactly_the_groups_virt_api_serves(objects):
    served = {(r.group, r.version) for r in RESOURCES if r.group not in CLUSTER_OWNED_GROUPS}
    served |= {(SUBRESOURCE_GROUP, v) for v in SUBRESOURCE_VERSIONS}
    api_services = [d for d in objects["production"] if d["kind"] == "APIService"]
    assert {(a["spec"]["group"], a["spec"]["version"]) for a in api_services} == served
    for a in api_services:
        assert a["metadata"]["name"] == f"{a['spec']['version']}.{a['spec']['group']}"
        assert a["spec"]["service"] == {"name": "virt-api", "namespace": "kubevirt", "port": 443}
        assert not a["spec"].get("insecureSkipTLSVerify")
    service = _find(objects["production"], "Service", "virt-api")
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https"}]


def test_nats_monitoring_port_is_in_no_service_and_admitted_only_from_monitoring(objects):
    docs = objects["production"]
    for service in (d for d in docs if d["kind"] == "Service"):
        assert 8222 not in {p["port"] for p in service["spec"]["ports"]}, service["metadata"]["name"]
    policy = _find(docs, "NetworkPolicy", "nats")
    monitoring = [rule for rule in policy["spec"]["ingress"] if {"protocol": "TCP", "port": 8222} in rule["ports"]]
    assert monitoring == [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                           "ports": [{"protocol": "TCP", "port": 8222}]}]
    deny = _find(docs, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def _nats_config(docs: list[dict]) -> str:
    return next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("nats-config-"))[
        "data"]["nats.conf"]


@pytest.mark.parametrize("overlay", ["production", "single-node"])
def test_nats_conf_is_accepted_by_nats_server(objects, overlay, tmp_path):
    from services.virt_api.tls import apply_serving_pki

    nats_server = ROOT / ".venv" / "bin" / "nats-server"
    pki = apply_serving_pki(tmp_path / "pki", ("nats-0.nats-headless.kubevirt.svc",))
    tls = tmp_path / "tls"
    tls.mkdir()
    for src, dst in ((pki.cert, "tls.crt"), (pki.key, "tls.key"), (pki.ca_cert, "ca.crt")):
        shutil.copy(src, tls / dst)
    config = _nats_config(objects[overlay])
    # the pod's paths, moved under tmp_path; the Secret nats-auth's auth.conf, stood in for
    for pod_path, here in (("/etc/nats/tls", str(tls)), ("store_dir: /data", f"store_dir: {tmp_path / 'js'}"),
                           ("/var/run/nats/", f"{tmp_path}/")):
        assert pod_path in config
        config = config.replace(pod_path, here)
    (tmp_path / "nats.conf").write_text(config)
    (tmp_path / "auth.conf").write_text('authorization { users: [ {user: virt-api, password: "x"} ] }\n')
    env = {**os.environ, "SERVER_NAME": "nats-0", "JETSTREAM_MAX_FILE_STORE": "8GB"}
    proc = subprocess.run([str(nats_server), "-c", str(tmp_path / "nats.conf"), "-t"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert ("cluster {" in config) is (overlay == "production")


def test_kubevirt_admin_role_covers_every_subresource_virt_api_serves(objects):
    from services.virt_api.subresources import SubresourceRegistry, apply_subresource_modules

    registry = SubresourceRegistry()
    apply_subresource_modules(registry)
    served = {(e.name, verb) for e in registry.discovery_entries() for verb in e.verbs}
    role = _find(objects["production"], "ClusterRole", "kubevirt.io:admin")
    granted = {(r, v) for rule in role["rules"] if rule["apiGroups"] == [SUBRESOURCE_GROUP]
               for r in rule["resources"] for v in rule["verbs"]}
    assert served and served <= granted

"""virt-api's delegated authentication and authorization decisions (pure): the request's
attributes as k8s.io/apiserver's RequestInfoFactory makes them, the SubjectAccessReview and the
Forbidden Status, the front-proxy user, the ConfigMap's settings, TokenReview answers, the
decision cache and the option combinations."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.virt_api.authentication import (
    FrontProxyRefused,
    RequestHeaderConfig,
    UserInfo,
    compute_bearer_token,
    compute_front_proxy_user,
    compute_request_header_config,
    compute_token_review_user,
)
from services.virt_api.authorization import (
    RequestAttributes,
    compute_access_decision,
    compute_always_allowed,
    compute_forbidden,
    compute_request_attributes,
    compute_subject_access_review,
)
from services.virt_api.delegation import DecisionCache
from services.virt_api.main import compute_auth_options


def _attrs(verb, group="", version="v1", namespace="", resource="", subresource="", name="", path=""):
    return RequestAttributes(verb=verb, path=path, is_resource_request=True, api_group=group, api_version=version,
                             namespace=namespace, resource=resource, subresource=subresource, name=name)


@pytest.mark.parametrize("method,path,query,expected", [
    ("GET", "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines", {},
     _attrs("list", "kubevirt.io", namespace="ns", resource="virtualmachines")),
    ("GET", "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines", {"watch": "true"},
     _attrs("watch", "kubevirt.io", namespace="ns", resource="virtualmachines")),
    ("GET", "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines", {"watch": "1"},
     _attrs("watch", "kubevirt.io", namespace="ns", resource="virtualmachines")),
    ("GET", "/apis/kubevirt.io/v1/watch/namespaces/ns/virtualmachines", {},
     _attrs("watch", "kubevirt.io", namespace="ns", resource="virtualmachines")),
    ("GET", "/apis/kubevirt.io/v1/watch/namespaces/ns/virtualmachines/vm1", {},
     _attrs("watch", "kubevirt.io", namespace="ns", resource="virtualmachines", name="vm1")),
    ("HEAD", "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines/vm1", {},
     _attrs("get", "kubevirt.io", namespace="ns", resource="virtualmachines", name="vm1")),
    ("GET", "/apis/kubevirt.io/v1/virtualmachineinstances", {"fieldSelector": "metadata.name=vmi1"},
     _attrs("list", "kubevirt.io", resource="virtualmachineinstances", name="vmi1")),
    ("GET", "/apis/kubevirt.io/v1/virtualmachineinstances", {"fieldSelector": "metadata.name!=vmi1"},
     _attrs("list", "kubevirt.io", resource="virtualmachineinstances")),
    ("POST", "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines", {},
     _attrs("create", "kubevirt.io", namespace="ns", resource="virtualmachines")),
    ("PUT", "/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachines/vm1/start", {},
     _attrs("update", "subresources.kubevirt.io", namespace="ns", resource="virtualmachines", subresource="start",
            name="vm1")),
    ("PATCH", "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines/vm1/status", {},
     _attrs("patch", "kubevirt.io", namespace="ns", resource="virtualmachines", subresource="status", name="vm1")),
    ("DELETE", "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines/vm1", {},
     _attrs("delete", "kubevirt.io", namespace="ns", resource="virtualmachines", name="vm1")),
    ("DELETE", "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines", {},
     _attrs("deletecollection", "kubevirt.io", namespace="ns", resource="virtualmachines")),
    ("GET", "/api/v1/nodes/host1", {}, _attrs("get", resource="nodes", name="host1")),
    ("GET", "/api/v1/namespaces/ns", {}, _attrs("get", namespace="ns", resource="namespaces", name="ns")),
    ("PUT", "/api/v1/namespaces/ns/status", {},
     _attrs("update", namespace="ns", resource="namespaces", subresource="status", name="ns")),
    ("GET", "/api/v1/namespaces", {}, _attrs("list", resource="namespaces")),
    ("OPTIONS", "/apis/kubevirt.io/v1/virtualmachines", {}, _attrs("", "kubevirt.io", resource="virtualmachines")),
])
def test_request_attributes_follow_request_info_factory(method, path, query, expected):
    assert compute_request_attributes(method, path, query) == RequestAttributes(
        **{**expected.__dict__, "path": path})


@pytest.mark.parametrize("path", ["/apis", "/apis/kubevirt.io", "/apis/kubevirt.io/v1", "/api", "/api/v1",
                                  "/openapi/v2", "/version", "/metrics"])
def test_paths_that_are_not_resources_are_non_resource_requests(path):
    assert compute_request_attributes("GET", path, {}) == RequestAttributes(verb="get", path=path,
                                                                            is_resource_request=False)


def test_a_watch_path_without_a_resource_is_an_error():
    with pytest.raises(Exception, match="unable to determine kind and namespace from url"):
        compute_request_attributes("GET", "/apis/kubevirt.io/v1/watch", {})


def test_subject_access_review_carries_the_user_and_leaves_empty_attributes_out():
    user = UserInfo("alice", uid="u1", groups=("devs",), extra=(("scopes", ("a", "b")),))
    review = compute_subject_access_review(user, compute_request_attributes(
        "GET", "/apis/kubevirt.io/v1/virtualmachines", {}))
    assert review == {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
        "user": "alice", "groups": ["devs"], "extra": {"scopes": ["a", "b"]}, "uid": "u1",
        "resourceAttributes": {"verb": "list", "group": "kubevirt.io", "version": "v1",
                               "resource": "virtualmachines"}}}
    assert compute_subject_access_review(UserInfo("bob"), compute_request_attributes("GET", "/apis", {}))["spec"] == {
        "user": "bob", "nonResourceAttributes": {"path": "/apis", "verb": "get"}}


def test_only_an_allowed_review_allows():
    assert compute_access_decision({"status": {"allowed": True}}).allowed
    assert compute_access_decision({"status": {"allowed": False, "denied": True, "reason": "no"}}).reason == "no"
    assert not compute_access_decision({"status": {}}).allowed  # no opinion
    assert compute_always_allowed(UserInfo("root", groups=("system:masters",)))
    assert not compute_always_allowed(UserInfo("alice", groups=("system:authenticated",)))


def test_forbidden_reads_as_kube_apiserver_writes_it():
    alice = UserInfo("alice")
    cluster = compute_forbidden(alice, compute_request_attributes("POST", "/apis/kubevirt.io/v1/virtualmachines", {}))
    assert cluster.code == 403 and cluster.reason == "Forbidden"
    assert cluster.message == ('virtualmachines.kubevirt.io is forbidden: User "alice" cannot create resource '
                               '"virtualmachines" in API group "kubevirt.io" at the cluster scope')
    core = compute_forbidden(alice, compute_request_attributes("GET", "/api/v1/nodes/n1", {}), "RBAC: no rule")
    assert core.message == ('nodes "n1" is forbidden: User "alice" cannot get resource "nodes" in API group "" at '
                            'the cluster scope: RBAC: no rule')
    assert core.to_status()["details"] == {"name": "n1", "kind": "nodes"}
    path = compute_forbidden(UserInfo("<b>"), compute_request_attributes("GET", "/openapi/v2", {}))
    assert path.message == 'forbidden: User "&lt;b&gt;" cannot get path "/openapi/v2"'
    assert "details" not in path.to_status()


def _certificate_der(cn: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(hours=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


PROXY = RequestHeaderConfig(client_ca_pem="ca", allowed_names=("front-proxy-client",))


def test_the_front_proxy_names_the_user_groups_and_extra():
    headers = [("x-remote-user", ""), ("X-Remote-User", "ignored"), ("X-Other-User", "alice"),
               ("X-Remote-Group", "g1"), ("x-remote-group", "g2"), ("X-Remote-Group", ""),
               ("X-Remote-Extra-Scopes", "s1"), ("x-remote-extra-scopes", "s2"), ("X-Remote-Extra-Example.org%2Fkey", "v")]
    config = RequestHeaderConfig(client_ca_pem="ca", allowed_names=(),
                                 username_headers=("X-Remote-User", "X-Other-User"))
    # the first value of a header counts (Go's Header.Get): "" there means the next header is asked
    assert compute_front_proxy_user(_certificate_der("anyone"), headers, config) == UserInfo(
        "alice", groups=("g1", "g2"), extra=(("example.org/key", ("v",)), ("scopes", ("s1", "s2"))))


def test_without_a_certificate_or_a_user_header_the_front_proxy_names_nobody():
    assert compute_front_proxy_user(None, [("X-Remote-User", "alice")], PROXY) is None
    assert compute_front_proxy_user(_certificate_der("front-proxy-client"), [("X-Remote-Group", "g")], PROXY) is None


def test_a_certificate_name_outside_the_allowed_names_is_refused():
    with pytest.raises(FrontProxyRefused, match="x509: subject with cn=intruder is not in the allowed list"):
        compute_front_proxy_user(_certificate_der("intruder"), [("X-Remote-User", "alice")], PROXY)
    assert compute_front_proxy_user(_certificate_der("front-proxy-client"), [("X-Remote-User", "alice")],
                                    PROXY) == UserInfo("alice")


def test_the_configmap_settings_and_their_errors():
    data = {"requestheader-client-ca-file": "PEM", "requestheader-allowed-names": '["front-proxy-client"]',
            "requestheader-username-headers": '["X-Remote-User"]', "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]'}
    assert compute_request_header_config(data) == RequestHeaderConfig(
        "PEM\n", ("front-proxy-client",), ("X-Remote-User",), ("X-Remote-Group",), ("X-Remote-Extra-",))
    with pytest.raises(ValueError, match="has no requestheader-client-ca-file"):
        compute_request_header_config({"client-ca-file": "PEM"})
    with pytest.raises(ValueError, match="requestheader-allowed-names is not a JSON array of strings"):
        compute_request_header_config({**data, "requestheader-allowed-names": '{"a": 1}'})


def test_bearer_tokens_and_token_review_answers():
    assert compute_bearer_token("Bearer abc") == "abc"
    assert compute_bearer_token("bearer  abc ") == "abc"
    assert compute_bearer_token("Basic abc") is None and compute_bearer_token("Bearer ") is None
    assert compute_bearer_token(None) is None
    assert compute_token_review_user({"status": {"authenticated": True, "user": {
        "username": "bob", "uid": "u", "groups": ["g"], "extra": {"k": ["v"]}}}}) == UserInfo(
        "bob", "u", ("g",), (("k", ("v",)),))
    assert compute_token_review_user({"status": {"authenticated": False, "error": "bad"}}) is None


def test_decisions_are_kept_for_their_ttl():
    now = [100.0]
    cache: DecisionCache[str, bool] = DecisionCache(ttl=10.0, size=2, clock=lambda: now[0])
    cache.put("a", True)
    assert cache.get("a") == (True, True)
    now[0] = 109.9
    assert cache.get("a") == (True, True)
    now[0] = 110.0
    assert cache.get("a") == (False, None)
    cache.put("a", False)
    cache.put("b", True)
    cache.put("c", True)  # the oldest goes
    assert cache.get("a") == (False, None) and cache.get("c") == (True, True)


def _params(**overrides):
    params = {"tls_cert_file": None, "tls_private_key_file": None, "requestheader_client_ca_file": None,
              "authorization_mode": "token", "insecure_http": False, "kubeconfig": None, "in_cluster": False,
              "requestheader_allowed_names": (), "requestheader_username_headers": (),
              "requestheader_group_headers": (), "requestheader_extra_headers_prefix": ()}
    return {**params, **overrides}


def test_option_combinations():
    options = compute_auth_options(_params(
        authorization_mode="delegated", requestheader_client_ca_file=Path("ca"),
        requestheader_allowed_names=("a,b", "c"), requestheader_group_headers=("X-G",)))
    assert options.allowed_names == ("a", "b", "c")
    assert (options.username_headers, options.group_headers, options.extra_header_prefixes) == (
        ("X-Remote-User",), ("X-G",), ("X-Remote-Extra-",))
    for overrides, message in [
        ({"requestheader_client_ca_file": Path("ca")}, "--requestheader-client-ca-file needs --authorization-mode delegated"),
        ({"tls_private_key_file": Path("k")}, "give --tls-cert-file and --tls-private-key-file together"),
        ({"tls_cert_file": Path("c"), "tls_private_key_file": Path("k"), "insecure_http": True}, "need TLS"),
        ({"authorization_mode": "delegated", "requestheader_username_headers": ("X-U",)},
         "--requestheader-username-headers goes with --requestheader-client-ca-file"),
        ({"kubeconfig": Path("kc")}, "--kubeconfig and --in-cluster go with --authorization-mode delegated"),
    ]:
        with pytest.raises(click.UsageError, match=message):
            compute_auth_options(_params(**overrides))

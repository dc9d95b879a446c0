"""Admission inside virt-api, as pure functions: decoding with Kubernetes' fieldValidation,
KubeVirt's create-time defaults and its validation rules (kubevirt-api.md §4, §6).

Public interface::

    admit(resource, body, *, operation, old=None, field_validation="Warn", ...) -> AdmissionResult
    parse_body(raw: bytes, content_type: str) -> dict
    ClusterConfig, DEFAULT_CLUSTER

Modules: ``pipeline`` (admit), ``body`` (parse_body), ``cluster`` (settings), ``context``,
``vmi_defaults`` (VMI mutator), ``vmi_rules``/``vm_rules``/``set_rules``/``migration_rules``
(per-kind admitters), ``rules_*`` (one concern of VMI rules each), ``fields``, ``naming``,
``labelselector``.
"""

from services.virt_api.admission.body import parse_body
from services.virt_api.admission.cluster import DEFAULT_CLUSTER, ClusterConfig
from services.virt_api.admission.pipeline import AdmissionResult, admit

__all__ = ["DEFAULT_CLUSTER", "AdmissionResult", "ClusterConfig", "admit", "parse_body"]

"""Admission as pure functions, shared by virt-api (on every write) and virt-controller (on
the objects it creates): decoding with Kubernetes' fieldValidation, KubeVirt's create-time
defaults and its validation rules (kubevirt-api.md §4, §6). No I/O and no service imports here:
virt-api's request bodies are read by :mod:`services.virt_api.request_body`.

Public interface::

    admit(resource, body, *, operation, old=None, field_validation="Warn", ...) -> AdmissionResult
    ClusterConfig, DEFAULT_CLUSTER

Modules: ``pipeline`` (admit), ``cluster`` (settings), ``context``,
``vmi_defaults`` (VMI mutator), ``vmi_rules``/``vm_rules``/``set_rules``/``migration_rules``
(per-kind admitters), ``rules_*`` (one concern of VMI rules each), ``fields``, ``naming``,
``labelselector``.
"""

from shared.admission.cluster import DEFAULT_CLUSTER, ClusterConfig
from shared.admission.pipeline import AdmissionResult, admit

__all__ = ["DEFAULT_CLUSTER", "AdmissionResult", "ClusterConfig", "admit"]

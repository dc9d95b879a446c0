"""Kubernetes-style object storage on NATS JetStream KV.

Public surface: :class:`ObjectStore` (create/get/list/update/delete/watch with Kubernetes
semantics), :class:`WatchEvent`, and the selector helpers in :mod:`shared.store.selectors`.
"""

from shared.store.objectstore import ObjectStore
from shared.store.selectors import (
    FieldSelector,
    LabelSelector,
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
)
from shared.store.watch import WatchEvent

__all__ = [
    "FieldSelector",
    "LabelSelector",
    "ObjectStore",
    "WatchEvent",
    "label_selector_from_dict",
    "parse_field_selector",
    "parse_label_selector",
]

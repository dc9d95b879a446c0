"""Request-body decoding that hostile input cannot blow up: the one YAML loader of virt-api,
nesting-depth limits for JSON and YAML, and duplicate-field detection for ``fieldValidation``.

Limits (all refusals are :class:`shared.errors.BadRequest`, 400):

* **nesting depth** — a body may nest objects and lists at most :data:`MAX_NESTING_DEPTH`
  levels (the top-level object is level 1). VirtualMachine manifests stay under 30 levels;
  100 leaves room while keeping every later recursive walk (admission, msgspec encoding) far
  from Python's recursion limit. Kubernetes' decoders have such limits too (Go
  ``encoding/json`` and go-yaml stop at 10000 levels; Go's stack is not Python's).
* **YAML alias expansion** — YAML anchors and aliases let 450 bytes stand for billions of
  nodes (the "billion laughs" bomb). After each document is composed, its node graph is
  counted with every alias expanded; more than ``max(100_000, 10 x distinct nodes)`` is refused
  as "excessive aliasing" (go-yaml, used by Kubernetes, refuses the same way with a ratio of
  alias expansions to nodes). A document without aliases always passes. An alias inside its
  own anchor (``&a [*a]``) is refused as recursive.

YAML is read as Kubernetes reads it (sigs.k8s.io/yaml converts YAML to JSON): the YAML 1.1
timestamp resolver is off, so ``2026-01-01T00:00:00Z`` stays a string, and non-string mapping
keys become strings (``1: one`` -> ``{"1": "one"}``).

Duplicate fields (``{"name": "a", "name": "b"}``): the last value wins, as in Kubernetes;
:func:`find_duplicate_json_fields` and the YAML loader report their paths
(``metadata.name``, ``spec.volumes[0].name``) so the caller can apply ``fieldValidation``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from collections.abc import Hashable
from typing import Any

import msgspec
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml._yaml import CParser
from yaml.resolver import Resolver
from yaml.scanner import ScannerError

from shared.errors import BadRequest

#: Deepest nesting of objects/lists accepted in a request body (top-level object = 1).
MAX_NESTING_DEPTH = 100
#: A YAML document may always expand to this many nodes ...
MIN_ALIAS_EXPANSION = 100_000
#: ... and to this many times its distinct (composed) node count when that is more.
ALIAS_EXPANSION_FACTOR = 10

TOO_DEEP_MESSAGE = (
    f"the body of the request is nested too deeply: more than {MAX_NESTING_DEPTH} levels of objects and "
    "lists; flatten the document"
)

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"


def too_deep() -> BadRequest:
    """The 400 for a body nested deeper than :data:`MAX_NESTING_DEPTH` (or deep enough to
    exhaust a parser's recursion)."""
    return BadRequest(TOO_DEEP_MESSAGE)


def check_depth(value: Any) -> None:
    """Raise :func:`too_deep`'s BadRequest when the decoded JSON value ``value`` nests dicts and
    lists deeper than :data:`MAX_NESTING_DEPTH`. Iterative (no recursion); visits each
    container once."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_NESTING_DEPTH:
            raise too_deep()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def decode_json(raw: bytes) -> Any:
    """The JSON value in ``raw``, nesting bounded: BadRequest (:func:`too_deep`) past
    :data:`MAX_NESTING_DEPTH` levels or Python's recursion limit. Raises ``msgspec.DecodeError``
    for a syntax error, for the caller to word. The depth walk is skipped when ``raw`` has too
    few ``{``/``[`` bytes to nest that deep (the common case: a count at C speed)."""
    try:
        value = msgspec.json.decode(raw)
    except RecursionError:  # msgspec stops at Python's recursion limit (~1000 levels)
        raise too_deep() from None
    if raw.count(b"{") + raw.count(b"[") > MAX_NESTING_DEPTH:
        check_depth(value)
    return value


# ---- JSON duplicate fields --------------------------------------------------------------------


def find_duplicate_json_fields(raw: bytes) -> list[str]:
    """Paths of the fields that appear more than once in one object of the JSON text ``raw``
    (``["metadata.name"]``), in document order; ``[]`` when there are none.

    ``raw`` must already have been decoded successfully (and depth-checked) with the fast
    decoder: this second parse keeps every key pair, which costs ~50 us for a typical manifest,
    so callers run it only when ``fieldValidation`` is Strict or Warn. Duplicates inside a value
    that a later duplicate replaced are not reported (that value is gone, as in Kubernetes)."""
    # id(dict) -> (dict, pairs, duplicated keys); holding the objects keeps the ids unique.
    marked: dict[int, tuple[dict[str, Any], list[tuple[str, Any]], list[str]]] = {}

    def keep_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            dups: list[str] = []
            for key, _ in pairs:
                if key in seen and key not in dups:
                    dups.append(key)
                seen.add(key)
            marked[id(obj)] = (obj, pairs, dups)
        return obj

    try:
        root = json.loads(raw, object_pairs_hook=keep_pairs)
    except (ValueError, RecursionError):
        return []  # e.g. an integer beyond Python's digit limit: the fast decoder's value stands
    if not marked:
        return []
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            entry = marked.get(id(item))
            if entry is not None:
                found.extend(_join(path, key) for key in entry[2])
            stack.extend((v, _join(path, k)) for k, v in reversed(item.items()) if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))) if isinstance(v, (dict, list)))
    return found


def duplicate_field_message(path: str) -> str:
    """Kubernetes' text for a field given twice in one object (``duplicate field "metadata.name"``)."""
    return f'duplicate field "{path}"'


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---- YAML -------------------------------------------------------------------------------------


@dataclass
class YamlDocuments:
    """What :func:`load_yaml` read: ``documents`` (one value per YAML document, ``None`` for an
    empty one) and ``duplicate_fields`` (paths of repeated mapping keys, all documents)."""

    documents: list[Any]
    duplicate_fields: list[str] = field(default_factory=list)


class KubernetesYamlLoader(Composer, SafeConstructor, Resolver, CParser):  # type: ignore[misc]
    """PyYAML's safe loading as Kubernetes reads YAML: no timestamp resolver, string keys, and
    the limits of this module (depth while composing, alias expansion after each document).

    Events come from libyaml (scanning and parsing in C, about 4x faster than PyYAML's Python
    parser; PyYAML's wheels include it); composing is PyYAML's Python Composer so that depth
    is checked before it recurses. Construction is PyYAML's SafeConstructor, so aliases become
    shared Python objects (no copies)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: Any) -> None:
        CParser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._nesting = 0
        self.duplicate_fields: list[str] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        # PyYAML composes recursively (3 frames a level): stop before Python's recursion limit.
        self._nesting += 1
        try:
            if self._nesting > MAX_NESTING_DEPTH and self.check_event(SequenceStartEvent, MappingStartEvent):
                raise too_deep()
            return super().compose_node(parent, index)
        finally:
            self._nesting -= 1

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        duplicated = check_yaml_graph(node) if node is not None else None
        if node is not None and duplicated:
            self.duplicate_fields.extend(_duplicate_paths(node, duplicated))
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        # Keys become strings as they are built: 1 and true stay two keys ("1", "true"), as in
        # Kubernetes' YAML-to-JSON conversion (a Python dict would fold them, 1 == True).
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, f"expected a mapping node, but found {node.id}", node.start_mark)
        self.flatten_mapping(node)
        mapping: dict[Hashable, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                if isinstance(key, (list, dict, set)):
                    raise ConstructorError("while constructing a mapping", node.start_mark,
                                           "found a key that is a list or a mapping", key_node.start_mark)
                key = _key_text(key)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def _key_text(key: Any) -> str:
    """A non-string YAML key as the string Kubernetes' YAML-to-JSON conversion writes."""
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


def load_yaml(raw: bytes | str) -> YamlDocuments:
    """Every document in the YAML stream ``raw``, read by :class:`KubernetesYamlLoader`.

    Raises ``yaml.YAMLError`` for syntax errors (callers word those) and BadRequest (400) for
    excessive aliasing, a recursive alias or nesting deeper than :data:`MAX_NESTING_DEPTH`."""
    loader = KubernetesYamlLoader(raw)
    try:
        documents = []
        while loader.check_data():
            documents.append(loader.get_data())
        return YamlDocuments(documents=documents, duplicate_fields=loader.duplicate_fields)
    except RecursionError:
        raise too_deep() from None
    except ScannerError as err:
        if err.problem == _LIBYAML_TOO_DEEP:  # libyaml's own flow-nesting limit (1000): same answer
            raise too_deep() from None
        raise
    finally:
        loader.dispose()


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_yaml_graph(root: Node) -> set[int]:
    """Check one composed YAML document (a node graph: an alias is the anchored node itself).

    Walks each distinct collection node once, iteratively, computing the node count with
    aliases expanded and the nesting depth. Raises BadRequest for excessive aliasing (expanded
    count over ``max(MIN_ALIAS_EXPANSION, ALIAS_EXPANSION_FACTOR x distinct)``, a scalar
    counted once per distinct parent), a node that contains itself, or nesting deeper than
    :data:`MAX_NESTING_DEPTH`. Returns the ids of the mapping nodes that repeat a scalar key
    (merge keys ``<<`` aside), usually empty."""
    if isinstance(root, ScalarNode):
        return set()
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    distinct = 0
    duplicated: set[int] = set()
    open_nodes: set[int] = set()  # the current path from the root: meeting one again is a cycle
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            total, deepest = 1, 0
            for child in _children(node):
                if isinstance(child, ScalarNode):
                    total += 1
                    distinct += 1
                else:
                    total += size[id(child)]
                    deepest = max(deepest, depth[id(child)])
            if deepest + 1 > MAX_NESTING_DEPTH:
                raise too_deep()
            size[key], depth[key] = total, deepest + 1
            distinct += 1
            continue
        if key in size:
            continue
        if key in open_nodes:
            mark = node.start_mark
            raise BadRequest(
                "the YAML body has a recursive alias: the node at line "
                f"{mark.line + 1} column {mark.column + 1} contains an alias of itself"
            )
        open_nodes.add(key)
        stack.append((node, True))
        if isinstance(node, MappingNode) and _repeats_a_key(node):
            duplicated.add(key)
        stack.extend(
            (child, False) for child in reversed(_children(node))
            if not isinstance(child, ScalarNode) and id(child) not in size
        )
    # Every node hangs under the root, so the root's count is the largest; counts are exact
    # integers (a bomb's 10**10 nodes cost nothing to count, only to build).
    limit = max(MIN_ALIAS_EXPANSION, ALIAS_EXPANSION_FACTOR * distinct)
    if size[id(root)] > limit:
        raise BadRequest(
            f"excessive aliasing in the YAML body: its aliases expand to more than {limit} nodes; "
            "write repeated parts out instead of nesting aliases"
        )
    return duplicated


def _repeats_a_key(node: MappingNode) -> bool:
    keys = [k.value for k, _ in node.value if isinstance(k, ScalarNode) and k.tag != _MERGE_TAG]
    return len(keys) != len(set(keys))


def _duplicate_paths(root: Node, duplicated: set[int]) -> list[str]:
    """Paths (``metadata.name``) of the repeated keys of the mapping nodes in ``duplicated``,
    in document order. Only run when a document has duplicates; expands aliases, which
    :func:`check_yaml_graph` has bounded."""
    found: list[str] = []
    stack: list[tuple[Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, MappingNode):
            if id(node) in duplicated:
                seen: set[str] = set()
                for k, _ in node.value:
                    if isinstance(k, ScalarNode) and k.tag != _MERGE_TAG:
                        if k.value in seen and _join(path, k.value) not in found:
                            found.append(_join(path, k.value))
                        seen.add(k.value)
            stack.extend(
                (v, _join(path, k.value) if isinstance(k, ScalarNode) else path) for k, v in reversed(node.value)
            )
        elif isinstance(node, SequenceNode):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(node.value))))
    return found

"""The one serializer from typed element structs to libvirt XML text.

Owns: the field markers (:func:`attr`, :func:`text`, :func:`child`, :func:`flag`)
that say how a dataclass field maps onto XML, and :func:`render_xml` which walks
a tree of such dataclasses with ``xml.etree.ElementTree``. The element structs
themselves live in :mod:`.schema`; policy (what goes into them) lives in the
configurators.

A struct class names its element with a ``TAG`` class variable (``"{ns}tag"``
for a namespaced element). Fields are emitted in declaration order; ``None``
and empty lists are omitted, so a struct only renders what a configurator set.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from typing import Any

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
KUBEVIRT_NS = "http://kubevirt.io"

ET.register_namespace("qemu", QEMU_NS)
ET.register_namespace("kubevirt", KUBEVIRT_NS)


def attr(name: str | None = None, default: Any = None) -> Any:
    """A field rendered as an XML attribute (``name`` defaults to the field name)."""
    return dataclasses.field(default=default, metadata={"xml": "attr", "name": name})


def text(default: Any = None) -> Any:
    """A field rendered as the element's text."""
    return dataclasses.field(default=default, metadata={"xml": "text"})


def child(name: str | None = None, default: Any = None, factory: Any = None) -> Any:
    """A field rendered as a child element.

    The value is a struct (rendered with its own ``TAG`` unless ``name`` overrides it),
    a list of structs, or a scalar (rendered as ``<name>value</name>``).
    """
    meta = {"xml": "child", "name": name}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag(name: str | None = None) -> Any:
    """A boolean field rendered as an empty element (``<readonly/>``) when true."""
    return dataclasses.field(default=False, metadata={"xml": "flag", "name": name})


def _attr_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# A struct class's fields as rendering steps, computed once per class:
# (field name, kind, XML name or None for a child struct's own TAG).
_Plan = tuple[tuple[str, str, str | None], ...]
_PLANS: dict[type, _Plan] = {}
_PREFIXES = {QEMU_NS: "qemu", KUBEVIRT_NS: "kubevirt"}


def _plan_of(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        steps = []
        for f in dataclasses.fields(cls):
            kind = f.metadata.get("xml")
            if kind is not None:
                steps.append((f.name, kind, f.metadata.get("name") or (None if kind == "child" else f.name)))
        plan = _PLANS[cls] = tuple(steps)
    return plan


class _UnknownNamespace(Exception):
    """A tag in a namespace without a registered prefix: rendered by ElementTree instead."""


def _escape_text(value: str) -> str:
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    return value


def _escape_attr(value: str) -> str:
    value = _escape_text(value)
    if '"' in value:
        value = value.replace('"', "&quot;")
    if "\r" in value:
        value = value.replace("\r", "&#13;")
    if "\n" in value:
        value = value.replace("\n", "&#10;")
    if "\t" in value:
        value = value.replace("\t", "&#09;")
    return value


def _qname(tag: str, used: set[str]) -> str:
    if tag[:1] != "{":
        return tag
    uri, _, local = tag[1:].partition("}")
    prefix = _PREFIXES.get(uri)
    if prefix is None:
        raise _UnknownNamespace(uri)
    used.add(uri)
    return f"{prefix}:{local}"


def _write(obj: Any, tag: str | None, out: list[str], level: int, used: set[str]) -> int:
    """Append the element of ``obj`` (its start tag at ``out[index]``, returned) as ElementTree's
    ``indent(space="  ")`` + ``tostring`` would write it, without its tail."""
    name = _qname(tag or type(obj).TAG, used)
    attrs: list[str] = []
    text: str | None = None
    children: list[tuple[Any, str | None, str | None]] = []  # (struct, tag) or (None, tag, text)
    for field_name, kind, xml_name in _plan_of(type(obj)):
        value = getattr(obj, field_name)
        if value is None or value is False or value == []:
            if kind == "flag" or value is not False:
                continue
        if kind == "attr":
            attrs.append(f' {xml_name}="{_escape_attr(_attr_value(value))}"')
        elif kind == "text":
            text = str(value)
        elif kind == "flag":
            children.append((None, xml_name, None))
        elif kind == "child":
            for item in value if isinstance(value, list) else [value]:
                if dataclasses.is_dataclass(item):
                    children.append((item, xml_name, None))
                else:
                    children.append((None, xml_name, str(item)))
    index = len(out)
    out.append(f"<{name}{''.join(attrs)}")
    if not children:
        out.append(f">{_escape_text(text)}</{name}>" if text else " />")
        return index
    inner = "\n" + "  " * (level + 1)
    out.append(">" + (_escape_text(text) if text and text.strip() else inner))
    for i, (item, child_tag, child_text) in enumerate(children):
        if i:
            out.append(inner)
        if item is not None:
            _write(item, child_tag, out, level + 1, used)
        else:
            child_name = _qname(child_tag or "", used)
            out.append(f"<{child_name}>{_escape_text(child_text)}</{child_name}>" if child_text
                       else f"<{child_name} />")
    out.append("\n" + "  " * level + f"</{name}>")
    return index


def _build(obj: Any, tag: str | None = None) -> ET.Element:
    element = ET.Element(tag or type(obj).TAG)
    for field_name, kind, name in _plan_of(type(obj)):
        value = getattr(obj, field_name)
        if value is None or value == [] or value is False and kind == "flag":
            continue
        if kind == "attr":
            element.set(name or field_name, _attr_value(value))
        elif kind == "text":
            element.text = str(value)
        elif kind == "flag":
            ET.SubElement(element, name or field_name)
        elif kind == "child":
            for item in value if isinstance(value, list) else [value]:
                if dataclasses.is_dataclass(item):
                    element.append(_build(item, name))
                else:
                    ET.SubElement(element, name or field_name).text = str(item)
    return element


def _render_with_elementtree(root: Any) -> str:
    element = _build(root)
    ET.indent(element, space="  ")
    return ET.tostring(element, encoding="unicode") + "\n"


def render_xml(root: Any) -> str:
    """Serialize a struct tree to indented XML text (no XML declaration): the text
    ``xml.etree.ElementTree``'s ``indent(space="  ")`` and ``tostring`` give, written directly
    (namespaces declared on the root element, sorted by prefix)."""
    out: list[str] = []
    used: set[str] = set()
    try:
        index = _write(root, None, out, 0, used)
    except _UnknownNamespace:
        return _render_with_elementtree(root)
    if used:
        declarations = "".join(f' xmlns:{_PREFIXES[uri]}="{_escape_attr(uri)}"'
                               for uri in sorted(used, key=_PREFIXES.__getitem__))
        start = out[index]
        name_end = start.find(" ") if " " in start else len(start)
        out[index] = start[:name_end] + declarations + start[name_end:]
    return "".join(out) + "\n"


def canonical_xml(xml_text: str) -> str:
    """Canonical form of an XML document (C14N 2.0, whitespace-only text stripped) for comparisons."""
    return ET.canonicalize(xml_text, strip_text=True)

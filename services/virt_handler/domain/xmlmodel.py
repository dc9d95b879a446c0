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


def _build(obj: Any, tag: str | None = None) -> ET.Element:
    element = ET.Element(tag or type(obj).TAG)
    for f in dataclasses.fields(obj):
        kind = f.metadata.get("xml")
        if kind is None:
            continue
        value = getattr(obj, f.name)
        name = f.metadata.get("name") or f.name
        if value is None or value == [] or value is False and kind == "flag":
            continue
        if kind == "attr":
            element.set(name, _attr_value(value))
        elif kind == "text":
            element.text = str(value)
        elif kind == "flag":
            ET.SubElement(element, name)
        elif kind == "child":
            for item in value if isinstance(value, list) else [value]:
                if dataclasses.is_dataclass(item):
                    element.append(_build(item, f.metadata.get("name")))
                else:
                    ET.SubElement(element, name).text = str(item)
    return element


def render_xml(root: Any) -> str:
    """Serialize a struct tree to indented XML text (no XML declaration)."""
    element = _build(root)
    ET.indent(element, space="  ")
    return ET.tostring(element, encoding="unicode") + "\n"


def canonical_xml(xml_text: str) -> str:
    """Canonical form of an XML document (C14N 2.0, whitespace-only text stripped) for comparisons."""
    return ET.canonicalize(xml_text, strip_text=True)

"""A simulated node for libvirt's ``test://`` driver: host description file -> connection URI.

``test:///default`` is one shared 16-CPU/3 GiB host per process. Tests, benchmarks and
``virtctl up`` with simulated nodes need hosts of a chosen size whose domains are private
to one connection: libvirt's test driver reads such a host from an XML file given in the
URI (``test:///<absolute path>``, format of libvirt's ``examples/xml/test/testnode.xml``).
Each connection to such a URI gets its own empty set of domains.
"""

from __future__ import annotations

from pathlib import Path


def compute_test_node_xml(*, cpus: int, memory_bytes: int, cpu_model: str = "x86_64", mhz: int = 2000) -> str:
    """The ``<node>`` document describing a test-driver host with ``cpus`` logical CPUs
    (one socket, one thread per core) and ``memory_bytes`` of memory (rounded down to KiB)."""
    return (
        "<node>\n"
        "  <cpu>\n"
        f"    <nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores><threads>1</threads>\n"
        f"    <active>{cpus}</active><mhz>{mhz}</mhz><model>{cpu_model}</model>\n"
        "  </cpu>\n"
        f"  <memory>{memory_bytes // 1024}</memory>\n"
        "</node>\n"
    )


def apply_test_node_file(path: Path, *, cpus: int, memory_bytes: int) -> str:
    """Write the host description to ``path`` (absolute) and return its ``test:///`` URI."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(compute_test_node_xml(cpus=cpus, memory_bytes=memory_bytes))
    return f"test://{path}"

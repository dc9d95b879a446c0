"""A client process that writes objects through ObjectStore as fast as it can (for kill -9 tests).

Usage: ``python store_writer.py <nats-url> <bucket-prefix>``. For i = 0, 1, ... it creates
VirtualMachine ``w-<i>`` and then updates it once; after each acknowledged write it prints
``ACK <name> <step> <resourceVersion>`` (step 0 = create, 1 = update) and flushes, so the parent
knows exactly which writes were acknowledged. A failed write prints ``ERR <name> <step> <reason>``.
Each object carries a random blob and its SHA-256, so a half-written object would be detectable.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys

from shared.errors import ApiError
from shared.store import ObjectStore


def make_payload(name: str, step: int) -> dict:
    blob = os.urandom(2048).hex()
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"step": step, "blob": blob, "sha256": hashlib.sha256(blob.encode()).hexdigest()},
    }


async def main(url: str, prefix: str) -> None:
    store = await ObjectStore.connect([url], bucket_prefix=prefix, op_timeout=20.0, name="store-writer")
    i = 0
    while True:
        name = f"w-{i}"
        try:
            created = await store.create("virtualmachines", make_payload(name, 0))
            print(f"ACK {name} 0 {created['metadata']['resourceVersion']}", flush=True)
            body = make_payload(name, 1)
            body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
            updated = await store.update("virtualmachines", body)
            print(f"ACK {name} 1 {updated['metadata']['resourceVersion']}", flush=True)
        except ApiError as err:
            print(f"ERR {name} {err.reason} {err.message}", flush=True)
        i += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

"""Stop and remove guests on one libvirt, as a command virtctl runs (``virtctl down``).

Usage::

    python -m services.virt_handler.guest_cleanup --libvirt-uri URI --vmis-dir DIR [--grace 20]
    python -m services.virt_handler.guest_cleanup --libvirt-uri URI --all

With ``--vmis-dir`` only the installation's guests are touched: a domain whose KubeVirt metadata
carries a VMI uid with a directory under ``DIR``. Each gets the ACPI power button, is destroyed
after ``--grace`` seconds if still running, then undefined, and its VMI directory removed. With
``--all`` (a node's private libvirt, where every domain is the installation's) each domain is
destroyed at once and undefined. Prints a JSON list of the domain names handled on stdout; an
unreachable libvirt handles nothing (``[]``). virtctl runs this as a process so that only the
handler's gateway (:mod:`services.virt_handler.hypervisor`) talks to libvirt.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import click

from services.virt_handler.hypervisor import DomainInfo, Hypervisor, HypervisorError


async def apply_stop_guests(uri: str, vmis_dir: Path | None, grace: float) -> list[str]:
    """Stop the guests described in the module docstring (``vmis_dir`` None = every domain,
    destroyed without grace); returns their domain names, [] when libvirt is unreachable."""
    hv = Hypervisor(uri)
    try:
        await hv.open()
    except HypervisorError:
        return []
    try:
        domains = await hv.list_domains()
        ours = domains if vmis_dir is None else [d for d in domains if d.uid and (vmis_dir / d.uid).is_dir()]
        await asyncio.gather(*(_stop_one(hv, d, vmis_dir, grace) for d in ours))
        return [d.name for d in ours]
    finally:
        await hv.close()


async def _stop_one(hv: Hypervisor, domain: DomainInfo, vmis_dir: Path | None, grace: float) -> None:
    if domain.is_active:
        if grace > 0:
            try:
                await hv.shutdown(domain.name)
            except HypervisorError:
                pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                current = await hv.get_domain(domain.name)
                if current is None or not current.is_active:
                    break
                await asyncio.sleep(0.5)
        try:
            await hv.destroy(domain.name)
        except HypervisorError:
            pass  # powered off meanwhile
    await hv.undefine(domain.name)
    if vmis_dir is not None and domain.uid:
        shutil.rmtree(vmis_dir / domain.uid, ignore_errors=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--libvirt-uri", required=True, help="The libvirt whose guests to stop.")
@click.option("--vmis-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Only guests whose VMI directory is here (the handler's <state>/vmis).")
@click.option("--all", "every", is_flag=True, help="Every domain on this libvirt, destroyed at once.")
@click.option("--grace", default=20.0, show_default=True, help="Seconds between ACPI shutdown and destroy.")
def main(libvirt_uri: str, vmis_dir: Path | None, every: bool, grace: float) -> None:
    """Stop and remove guests (see the module docstring); prints their names as JSON."""
    if every == (vmis_dir is not None):
        raise click.UsageError("give exactly one of --vmis-dir and --all")
    names = asyncio.run(apply_stop_guests(libvirt_uri, None if every else vmis_dir, 0.0 if every else grace))
    click.echo(json.dumps(names))


if __name__ == "__main__":
    main()

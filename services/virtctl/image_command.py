"""virtctl image: import guest images into the installation's local OCI image store, list them.

``virtctl image import REF --disk FILE`` stores a qcow2/raw disk as a containerDisk image;
``virtctl image import REF --kernel FILE [--initrd FILE] [--cmdline ARGS]`` a kernelBoot image
(both at once: a disk image that boots by direct kernel boot). ``virtctl image list`` prints the
stored references. The store is ``<state-dir>/images`` (:mod:`shared.images`), the one virt-handler
of ``virtctl up`` resolves ``containerDisk``/``kernelBoot`` images from.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from services.virtctl.main import cli, default_state_dir, state_dir_option
from shared.images import ImageStore

# The reference grammar of the distribution spec (github.com/distribution/reference, reference.go):
# [domain[:port]/]path-component(/path-component)*[:tag][@algorithm:hex]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)"
REFERENCE_RE = re.compile(
    rf"^{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?$"
)


def is_valid_reference(ref: str) -> bool:
    """True when ``ref`` is a well-formed image reference (distribution spec grammar, sha256 digests)."""
    return bool(REFERENCE_RE.match(ref)) and len(ref) <= 255


def _store(state_dir: Path | None) -> ImageStore:
    return ImageStore((state_dir or default_state_dir()).resolve() / "images")


@cli.group()
def image() -> None:
    """Import guest images (containerDisk, kernelBoot) into the installation's image store."""


existing_file = click.Path(path_type=Path, dir_okay=False)


@image.command("import")
@state_dir_option
@click.argument("ref")
@click.option("--disk", type=existing_file, default=None, help="qcow2 or raw disk file (containerDisk image)")
@click.option("--kernel", type=existing_file, default=None, help="kernel file (kernelBoot image, at /boot/vmlinuz)")
@click.option("--initrd", type=existing_file, default=None, help="initrd file (at /boot/initrd.img)")
@click.option("--cmdline", default=None, help="default kernel command line recorded in the image")
def import_image(state_dir: Path | None, ref: str, disk: Path | None, kernel: Path | None,
                 initrd: Path | None, cmdline: str | None) -> None:
    """Import REF from --disk FILE and/or --kernel FILE [--initrd FILE]; re-importing replaces REF."""
    if not is_valid_reference(ref):
        raise click.ClickException(f"{ref!r} is not an image reference (e.g. registry.local/demo:latest)")
    if disk is None and kernel is None:
        raise click.ClickException("give --disk FILE or --kernel FILE")
    if kernel is None and (initrd is not None):
        raise click.ClickException("--initrd needs --kernel")
    for option, path in (("--disk", disk), ("--kernel", kernel), ("--initrd", initrd)):
        if path is not None and not path.is_file():
            raise click.ClickException(f"{option} {path}: no such file")
    store = _store(state_dir)
    if disk is not None:
        resolved = store.import_disk(ref, disk, kernel=kernel, initrd=initrd, cmdline=cmdline)
    else:
        assert kernel is not None  # checked above: --disk or --kernel is given
        resolved = store.import_kernel(ref, kernel, initrd=initrd, cmdline=cmdline)
    parts = [f"disk={resolved.disk_format}" if resolved.disk else "",
             "kernel" if resolved.kernel else "", "initrd" if resolved.initrd else ""]
    click.echo(f"imported {resolved.ref} {resolved.digest} ({', '.join(p for p in parts if p)}) into {store.root}")


@image.command("list")
@state_dir_option
def list_images(state_dir: Path | None) -> None:
    """Print the stored references, one a line."""
    store = _store(state_dir)
    if not store.root.exists():
        return
    for ref in store.list_refs():
        click.echo(ref)

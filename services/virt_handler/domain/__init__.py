"""VMI -> libvirt domain conversion for virt-handler (pure), plus the disk preparation it needs.

Public API::

    compute_domain_xml(vmi: dict, ctx: ConversionContext) -> str
    compute_domain(vmi, ctx) -> schema.Domain
    domain_name(namespace, name) -> "<namespace>_<name>"
    apply_disk_preparation(vmi, ctx) -> None;  cleanup(vmi, ctx) -> None
    is_direct_io_supported(directory) -> bool
    ConversionContext, PortForward, ImageResolver, DomainConversionError (reason, message)

See docs/domain-conversion.md for the mapping table.
"""

from .configurators.console import CONSOLE_LOG, GUEST_AGENT_CHANNEL
from .configurators.identity import domain_name
from .context import DEFAULT_PVC_ROOT, ConversionContext, ImageResolver, PortForward
from .converter import CONFIGURATORS, compute_domain, compute_domain_xml
from .errors import REASONS, DomainConversionError
from .preparation import apply_disk_preparation, cleanup, is_direct_io_supported

__all__ = ["CONFIGURATORS", "CONSOLE_LOG", "DEFAULT_PVC_ROOT", "GUEST_AGENT_CHANNEL", "REASONS", "ConversionContext",
           "DomainConversionError", "ImageResolver", "PortForward", "apply_disk_preparation", "cleanup",
           "compute_domain", "compute_domain_xml", "domain_name", "is_direct_io_supported"]

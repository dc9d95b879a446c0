"""Configurators: small functions ``configure_*(vmi, ctx, domain)`` each filling one concern of
the :class:`..schema.Domain` from the VMI. Their order is the list in ``..converter``."""

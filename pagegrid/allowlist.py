"""Per-key IP allow-lists: CIDR ranges (IPv4 and IPv6) a key may be used from.

A key stores its ranges as normalised text (``["10.0.0.0/8", "2001:db8::/32"]``); the request
path turns each distinct list into networks once (``networks``, cached) and tests the client IP
as PageGrid saw it, i.e. after the trusted-proxy rule of ``proxies.py``.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_RANGES = 100


def parse(text: str) -> list[str]:
    """``"10.0.0.0/8, 192.0.2.7\\n2001:db8::/32"`` as normalised CIDR text; ValueError naming a bad entry.

    A single address is a /32 (or /128). A range with host bits set (``10.0.0.5/8``) is refused
    rather than silently widened, since it is most likely a typo for a narrower range.
    """
    ranges: list[str] = []
    for part in re.split(r"[,\s]+", text or ""):
        if not part:
            continue
        try:
            network = ipaddress.ip_network(part, strict=True)
        except ValueError:
            try:
                wide = ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part} is not an IP address or CIDR range.") from None
            raise ValueError(f"{part} has host bits set: did you mean {wide}?") from None
        if str(network) not in ranges:
            ranges.append(str(network))
    if len(ranges) > MAX_RANGES:
        raise ValueError(f"At most {MAX_RANGES} ranges per key.")
    return ranges


@lru_cache(maxsize=4096)
def networks(ranges: tuple[str, ...]) -> tuple[Network, ...]:
    """The ranges as network objects, parsed once per distinct list."""
    return tuple(ipaddress.ip_network(r) for r in ranges)


def allows(nets: tuple[Network, ...], address: str | None) -> bool:
    """Whether ``address`` is inside one of ``nets`` (an empty list allows everyone)."""
    if not nets:
        return True
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return any(ip in net or (mapped is not None and mapped in net) for net in nets)

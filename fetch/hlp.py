"""HLP discovery: the parent vault, its child vaults by name, and which children liquidate.

Backstop liquidations show up in the trade stream as trades against a liquidator vault, so the
set of liquidator addresses must be complete. The child list has grown over time (3 children in
the 2024 docs, 7 in 2026), so it is read at start-up from the parent's `childAddresses`, and a
child whose name contains "liquidator" counts as one. The configured addresses (by default the
confirmed "HLP Liquidator") always count, also when discovery fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from config.values import HLP_PARENT
from fetch.info import HyperliquidInfo
from utils.errors import HyperfluxError

log = logging.getLogger(__name__)

KNOWN_LIQUIDATORS = ("0x2e3d94f0562703b25c83308a05046ddaf9a8dd14",)


@dataclass(frozen=True)
class HlpVaults:
    parent: str
    children: dict[str, str] = field(default_factory=dict)  # address -> name
    liquidators: frozenset[str] = frozenset()

    @property
    def addresses(self) -> list[str]:
        """The parent and every child: the vaults whose positions are collected."""
        return [self.parent, *self.children]

    def name_of(self, address: str) -> str:
        return "HLP" if address == self.parent else self.children.get(address, address)


async def discover_hlp(
    info: HyperliquidInfo,
    parent: str = HLP_PARENT,
    known_liquidators: tuple[str, ...] = KNOWN_LIQUIDATORS,
) -> HlpVaults:
    """Read the parent's children and their names; never fails (falls back to what is known)."""
    parent = parent.lower()
    known = frozenset(a.lower() for a in known_liquidators)
    try:
        details = await info.vault_details(parent)
    except HyperfluxError as exc:
        log.warning("HLP discovery failed (%s); using the known liquidators only", exc)
        return HlpVaults(parent, liquidators=known)
    if details is None or details.relationship != "parent":
        log.warning("vault %s is not an HLP parent; using the known liquidators only", parent)
        return HlpVaults(parent, liquidators=known)
    children: dict[str, str] = {}
    for child in details.child_addresses:
        try:
            child_details = await info.vault_details(child)
        except HyperfluxError as exc:
            log.warning("could not read the name of HLP child %s: %s", child, exc)
            child_details = None
        children[child] = child_details.name if child_details else child
    named = {a for a, name in children.items() if "liquidator" in name.lower()}
    vaults = HlpVaults(parent, children, known | named)
    log.info(
        "HLP: %d child vaults, liquidators: %s",
        len(children),
        ", ".join(f"{vaults.name_of(a)} ({a})" for a in sorted(vaults.liquidators)),
    )
    return vaults

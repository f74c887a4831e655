"""Upgrade paths drawn as inline SVG: tiers left to right by rank, one arrow per declared upgrade."""

from __future__ import annotations

from markupsafe import Markup, escape

from engine import Product

BOX_W, BOX_H, GAP, MARGIN = 150, 46, 70, 16


def upgrade_diagram(product: Product) -> Markup:
    """Return an SVG element showing the product's tiers and its upgrade paths, each with its rule id."""
    ranks = {tier.id: tier.rank for tier in product.tiers}
    count = max(len(product.tiers), 1)
    longest = max((abs(ranks.get(u.target, 0) - ranks.get(u.source, 0)) for u in product.upgrades), default=1)
    arc_room = 26 * max(longest - 1, 0)
    width = MARGIN * 2 + count * BOX_W + (count - 1) * GAP
    top = MARGIN + arc_room
    height = top + BOX_H + MARGIN + arc_room
    parts = [f'<svg class="diagram" role="img" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" aria-label="Upgrade paths of {escape(product.name)}">',
             f"<title>Upgrade paths of {escape(product.name)}</title>",
             '<defs><marker id="arrow-' + escape(product.id) + '" viewBox="0 0 10 10" refX="9" refY="5" '
             'markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>']

    def left(rank: int) -> int:
        return MARGIN + rank * (BOX_W + GAP)

    for index, upgrade in enumerate(product.upgrades):
        source, target = ranks.get(upgrade.source), ranks.get(upgrade.target)
        if source is None or target is None:
            continue
        label = f"{upgrade.rule} ({upgrade.where.file}:{upgrade.where.line})"
        marker = f'marker-end="url(#arrow-{escape(product.id)})"'
        if abs(target - source) == 1:
            x1 = left(source) + (BOX_W if target > source else 0)
            x2 = left(target) + (0 if target > source else BOX_W)
            y = top + BOX_H / 2
            parts.append(f'<g class="edge"><title>{escape(label)}</title>'
                         f'<line x1="{x1}" y1="{y}" x2="{x2 - 2 if target > source else x2 + 2}" y2="{y}" {marker}/></g>')
        else:
            span = abs(target - source)
            above = index % 2 == 0
            x1 = left(source) + BOX_W / 2
            x2 = left(target) + BOX_W / 2
            y = top if above else top + BOX_H
            bend = (top - 26 * span - 8) if above else (top + BOX_H + 26 * span + 8)
            parts.append(f'<g class="edge"><title>{escape(label)}</title>'
                         f'<path d="M{x1},{y} Q{(x1 + x2) / 2},{bend} {x2},{y + (-2 if above else 2)}" fill="none" '
                         f'{marker}/></g>')
    for tier in product.tiers:
        x = left(tier.rank)
        label = f"{tier.rule} ({tier.where.file}:{tier.where.line})"
        parts.append(f'<g class="node"><title>{escape(label)}</title>'
                     f'<rect x="{x}" y="{top}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
                     f'<text x="{x + BOX_W / 2}" y="{top + 19}" text-anchor="middle">{escape(tier.name)}</text>'
                     f'<text class="rule" x="{x + BOX_W / 2}" y="{top + 35}" text-anchor="middle">'
                     f'{escape(tier.rule)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))

"""Licence-update guidance: the steps that update an installed system after an event.

Public API (for the CLI and the web panel shown after each activation):
- `update_guide(catalog, product, version, mode, event="amendment", activation_id=None)` -> a dict with the
  title, the tool and the steps; CompanionError (with a did-you-mean) for an unknown product, version, mode
  or event.
"""

from __future__ import annotations


from engine.catalogue.model import Catalog, version_key
from engine.problem import CompanionError, Location, Problem, did_you_mean

from engine.catalogue.policies.guidance import EVENTS, MODES, NO_ACTIVATION_ID, SUMMARIES, guidance_of


def update_guide(catalog: Catalog, product: str, version: str | None, mode: str, event: str = "amendment",
                 activation_id: str | None = None) -> dict:
    """Return the steps that update an installed product version after an event, online or offline.

    `version` None means the product's latest version (`version_assumed` is then true).
    Returns {product, product_name, version, version_assumed, mode, event, procedure, summary, title, tool,
             steps, rule, where, sample}.
    """
    guidance = guidance_of(catalog)
    problems = []
    found = catalog.products.get(product)
    if found is None:
        problems.append(Problem("unknown-ref", f"unknown product {product!r}", Location(guidance.file),
                                hint=did_you_mean(product, catalog.products) or "products: " + ", ".join(catalog.products),
                                path="product"))
    elif version is not None and version not in found.versions:
        versions = sorted(found.versions, key=version_key)
        problems.append(Problem("unknown-version", f"{product} has no version {version!r}", Location(guidance.file),
                                hint=did_you_mean(version, versions) or "versions: " + ", ".join(versions),
                                path="version"))
    if mode not in MODES:
        problems.append(Problem("unknown-mode", f"unknown mode {mode!r}", Location(guidance.file),
                                hint=did_you_mean(mode, MODES) or "modes: " + ", ".join(MODES), path="mode"))
    if event not in EVENTS:
        problems.append(Problem("unknown-event", f"unknown event {event!r}", Location(guidance.file),
                                hint=did_you_mean(event, EVENTS) or "events: " + ", ".join(EVENTS), path="event"))
    if problems:
        raise CompanionError(problems)
    chosen_version = version or found.latest_version
    guide = guidance.guide_for(product, chosen_version)
    if guide is None:  # the checks refuse such rules; a direct caller with a hand-made catalogue can still get here
        raise CompanionError([Problem("no-guidance", f"{product} {chosen_version} has no licence-update guidance",
                                      Location(guidance.file), path="version")])
    procedure = guidance.events[event]
    values = {"product_name": found.name, "version": chosen_version, "tool": guide.tool,
              "activation_id": activation_id or NO_ACTIVATION_ID}
    steps = [text.format_map(values) for text in guide.steps[procedure][mode]]
    summary = SUMMARIES[procedure, mode]
    return {
        "product": product, "product_name": found.name, "version": chosen_version,
        "version_assumed": version is None, "mode": mode, "event": event, "procedure": procedure,
        "summary": summary, "title": f"{found.name} {chosen_version}, after the {event}: {summary} in {guide.tool}",
        "tool": guide.tool, "steps": steps, "rule": guide.rule, "where": str(guide.where), "sample": guide.sample,
    }


def render_guide(guide: dict) -> str:
    """Format a guide for a terminal: a title, numbered steps, and a note when the text is sample data."""
    lines = [guide["title"]]
    if guide["version_assumed"]:
        lines.append(f"(no version given: assumed the latest, {guide['version']})")
    lines += [f"  {number}. {step}" for number, step in enumerate(guide["steps"], start=1)]
    lines.append(f"rule {guide['rule']} at {guide['where']}" + ("; SAMPLE text, not the vendor's wording"
                                                                  if guide["sample"] else ""))
    return "\n".join(lines)

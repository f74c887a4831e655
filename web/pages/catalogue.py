"""The Catalogue page for product managers: what the rules declare, where, and the state of the last reload."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for

from web import auth, services
from web.diagram import upgrade_diagram
from web.state import compiled, live

bp = Blueprint("catalogue", __name__)


@bp.get("/catalogue")
@auth.product_manager_required
def catalogue():
    """Show products, tiers, upgrade paths, add-ons and badges with rule ids and places; the last reload."""
    current = compiled()
    state = live().state
    data = services.catalogue_json(current.catalog, state) if current else None
    diagrams = {product.id: upgrade_diagram(product) for product in current.catalog.products.values()} \
        if current else {}
    return render_template("catalogue.html", data=data, state=state, diagrams=diagrams, rules_dir=live().rules_dir)


@bp.post("/catalogue/reload")
@auth.product_manager_required
def reload_rules():
    """Check the rule files now instead of waiting for the next request."""
    live().check_now()
    flash("Rule files checked." if live().state.ok else "The rule files do not load; the last good catalogue stays.",
          "info" if live().state.ok else "error")
    return redirect(url_for("catalogue.catalogue"))

"""Checkout: review a saved project's order, then place it with the vendor's cart and keep its confirmation."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from engine.locker import accounts, orders
from engine.problem import CompanionError, Problem
from engine import CheckoutFailed, CheckoutRefused, cart_url_from
from web import auth, inputs, services
from web.pages.queries import catalogue_or_error
from web.state import store

bp = Blueprint("checkout", __name__)


def _checkout_page(current, account, project, failure: CheckoutFailed | None = None, status: int = 200):
    """Render the review page: the order to confirm, the stored confirmation, or why checkout is refused."""
    order = placed = None
    problems: list[Problem] = []
    refused = None
    try:
        order = services.prepare_checkout(current, account, project)
    except CheckoutRefused as error:
        refused = error.problems[0].message
        status = 403
    except CompanionError as error:
        problems = error.problems
        status = 422
    cart_problems: list[Problem] = []
    if order is not None:
        placed = orders.find(store(), account.email, project.id, order.idempotency_key)
        try:
            cart_url = cart_url_from(current_app.config.get("CART_URL") or None)
        except CompanionError as error:
            cart_url, cart_problems = None, error.problems
    else:
        cart_url = None
    offer = services.offer(current, account, project.configuration.get("product")) if refused else None
    return render_template("checkout.html", project=project, order=order, placed=placed, refused=refused,
                           problems=problems + cart_problems, cart_url=cart_url, failure=failure, offer=offer,
                           payload_json=json.dumps(order.payload, indent=2, ensure_ascii=False) if order else "",
                           history=orders.of_projects(store(), account.email).get(project.id, [])), status


@bp.get("/projects/<project_id>/checkout")
@auth.login_required
def checkout_review(project_id: str):
    """Review a project's order before confirming it: the bill of materials and what will be sent to the cart."""
    current = catalogue_or_error()
    account = auth.current_account()
    project = accounts.get_project(store(), account.email, inputs.project_id(project_id))
    return _checkout_page(current, account, project)


@bp.post("/projects/<project_id>/checkout")
@auth.login_required
def checkout_confirm(project_id: str):
    """Place the reviewed order with the vendor's cart and store its confirmation number with the project.

    The order is sent with its idempotency key even when this project already has a confirmation for it (a
    second press of the button, a retry): the cart answers with the first confirmation, and it is stored once.
    """
    current = catalogue_or_error()
    account = auth.current_account()
    project = accounts.get_project(store(), account.email, inputs.project_id(project_id))
    try:
        order = services.prepare_checkout(current, account, project)
    except CompanionError:
        return _checkout_page(current, account, project)
    if request.form.get("idempotency_key") != order.idempotency_key:
        flash("The order changed since you reviewed it (the project or the rules changed). Check it again, then "
              "confirm.", "warning")
        return redirect(url_for("checkout.checkout_review", project_id=project.id), code=303)
    try:
        confirmation = services.place_checkout(order, current_app.config.get("CART_URL"),
                                               dict(current_app.config.get("CHECKOUT_RETRY") or {}))
    except CheckoutFailed as failure:
        return _checkout_page(current, account, project, failure=failure, status=502)
    placed = orders.record(store(), account.email, project, order, confirmation)
    flash(f"Order placed: confirmation number {placed.confirmation}.")
    return redirect(url_for("checkout.checkout_review", project_id=project.id), code=303)

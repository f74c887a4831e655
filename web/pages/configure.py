"""The Configure page: a configuration built step by step, with only allowed choices and the verdict."""

from __future__ import annotations

import json

from flask import Blueprint, render_template, request

from engine.locker import accounts
from web import auth, inputs, services
from web.pages.queries import catalogue_or_error, configuration_from, guidance, is_complete, query_of
from web.state import store

bp = Blueprint("configure", __name__)


@bp.get("/configure")
@auth.login_required
def configure():
    """Build a configuration step by step: only allowed choices, the others with their reasons, and the verdict."""
    current = catalogue_or_error()
    account = auth.current_account()
    configuration, problems = configuration_from(request.args)
    result = guidance(current, account, configuration)
    if problems:  # a field could not be read: no verdict (and no Save or Activate) for what was not asked for
        result["verdict"] = None
    project = None
    if request.args.get("project"):
        project = accounts.get_project(store(), account.email, inputs.project_id(request.args["project"], "project"))
    product = current.catalog.products.get(configuration.get("product", ""))
    exports_offer = None
    if project is not None and result["verdict"] and result["verdict"]["valid"]:
        exports_offer = services.offer(current, account, configuration.get("product"))
    return render_template("configure.html", configuration=configuration, problems=problems + result["problems"],
                           options=result["options"], verdict=result["verdict"], catalog=current.catalog,
                           product=product, complete=is_complete(configuration), project=project,
                           query=query_of(configuration), configuration_json=json.dumps(configuration),
                           exports_offer=exports_offer,
                           project_unchanged=project is not None and project.configuration == configuration), \
        422 if problems or result["problems"] else 200

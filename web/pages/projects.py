"""The Projects page: saved configurations, saved, reopened, copied, deleted and exported as a bill of materials."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request, url_for

from engine.locker import accounts, orders
from engine.locker.db import Store
from engine import CSV_MEDIA_TYPE
from web import auth, inputs, services
from web.pages.forms import Messages, once_for_form, posted_configuration
from web.pages.queries import catalogue_or_error, query_of
from web.state import compiled, store

bp = Blueprint("projects", __name__)


@bp.get("/projects")
@auth.login_required
def projects():
    """List the saved projects."""
    account = auth.current_account()
    items = accounts.list_projects(store(), account.email)
    current = compiled()
    malformed = {project.id: services.configuration_problems(project.configuration) for project in items}
    offers = {project.id: services.offer(current, account, project.configuration.get("product"))
              for project in items if not malformed[project.id]}
    checkout_decision = next((item["checkout"] for item in offers.values() if item), None)
    return render_template("projects.html", projects=items, query_of=query_of, offers=offers, malformed=malformed,
                           checkout_decision=checkout_decision, orders=orders.of_projects(store(), account.email))


@bp.post("/projects")
@auth.login_required
def save_project():
    """Save the configuration as a new project, or over an existing one."""
    configuration = posted_configuration()
    project_id = inputs.project_id(request.form.get("project"), "project") if request.form.get("action") == "update" \
        else None

    def work(database: Store) -> tuple[str, Messages]:
        project = accounts.save_project(database, auth.current_account().email, request.form.get("name", ""),
                                        configuration, project_id)
        return url_for("configure.configure") + "?" + query_of(project.configuration, project=project.id), \
            [("message", f"Project “{project.name}” saved.")]

    return once_for_form(work)


@bp.get("/projects/<project_id>")
@auth.login_required
def open_project(project_id: str):
    """Reopen a project on the Configure page."""
    project = accounts.get_project(store(), auth.current_account().email, inputs.project_id(project_id))
    configuration = services.stored_configuration(project)
    return redirect(url_for("configure.configure") + "?" + query_of(configuration, project=project.id))


@bp.post("/projects/<project_id>/copy")
@auth.login_required
def copy_project(project_id: str):
    """Copy a project."""
    email, number = auth.current_account().email, inputs.project_id(project_id)

    def work(database: Store) -> tuple[str, Messages]:
        services.stored_configuration(accounts.get_project(database, email, number))  # a malformed one is not copied
        copy = accounts.copy_project(database, email, number)
        return url_for("projects.projects"), [("message", f"Copied as “{copy.name}”.")]

    return once_for_form(work)


@bp.post("/projects/<project_id>/delete")
@auth.login_required
def delete_project(project_id: str):
    """Delete a project."""
    email, number = auth.current_account().email, inputs.project_id(project_id)

    def work(database: Store) -> tuple[str, Messages]:
        accounts.delete_project(database, email, number)
        return url_for("projects.projects"), [("message", "Project deleted.")]

    return once_for_form(work)


@bp.get("/projects/<project_id>/bom.csv")
@auth.login_required
def project_bom(project_id: str):
    """Download a saved project's bill of materials as CSV in one of the partner's templates (?template=ID)."""
    current = catalogue_or_error()
    account = auth.current_account()
    project = accounts.get_project(store(), account.email, inputs.project_id(project_id))
    data, name = services.project_bom(current, account, project, request.args.get("template"))
    return csv_response(data, name)


def csv_response(data: bytes, name: str) -> Response:
    """Answer with a CSV file as an attachment."""
    response = Response(data, mimetype=None, content_type=CSV_MEDIA_TYPE)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response

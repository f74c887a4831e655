"""The pages: sign in, Configure, Projects, Checkout, Activate, Subscriptions, Locker, and the product managers'
Catalogue, one blueprint per area (create_app registers each).

Pages are server-rendered; a configuration travels in the query string (web.pages.queries) so that every
state of the Configure page is a link, and every change is a GET that the engine answers again. Writes are
POST forms with a CSRF token and an idempotency key; each answers with a redirect to a page that shows the
stored result (POST, redirect, GET), so a refresh never sends the form again, and a form sent twice (back,
then submit) has one effect and shows the first result (web.pages.forms).
"""

from __future__ import annotations

from web import auth
from web.pages.forms import new_form_key
from web.state import today


def template_globals() -> dict:
    """Give every template the signed-in account, a maker of form keys and the server's date."""
    return {"account": auth.current_account(), "form_key": new_form_key, "today": today().isoformat()}

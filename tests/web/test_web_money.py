"""Money safety through the pages and the API: a form or request sent twice has one effect, and the server
decides the date of every debit (issue #12, findings 1 and 2)."""

from __future__ import annotations

import html
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from engine.locker import accounts
from engine import locker
from engine.clock import Clock, zone
from engine.problem import CompanionError
from web.state import store
from web_support import PASSWORD, issue, sign_in, token_for

ESSENTIAL = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36, "tier": "essential",
             "devices": 100}
ESSENTIAL_QUERY = "product=epo&version=2024&license=subscription&term_months=36&tier=essential&devices=100"
ESSENTIAL_VOUCHERS = (("EPO-ESS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 75))


def new_partner(app, name: str, *vouchers):
    """Add a power-management partner NAME, give them VOUCHERS, and return a signed-in client and their email."""
    email = f"{name}@integrator.example"
    with app.app_context():
        locker.add_user(store(), email, company="Money Test", badges=["power-management"], country="US")
        accounts.set_password(store(), email, PASSWORD)
        for reference, quantity in vouchers:
            [code] = locker.issue_vouchers(store(), reference, quantity)
            locker.redeem(store(), email, code)
    client = app.test_client()
    assert sign_in(client, email).status_code == 302
    return client, email


def form_of(page: str, action: str) -> dict:
    """Return the fields of the page's POST form whose action is ACTION (hidden and filled-in values)."""
    for match in re.finditer(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', page, re.S):
        if html.unescape(match.group(1)) == action:
            return {name: html.unescape(value) for name, value in
                    re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', match.group(2))}
    raise AssertionError(f"no form posting to {action}")


def activations_of(app, email: str) -> list:
    with app.app_context():
        return locker.list_activations(store(), email)


def balances_of(app, email: str) -> dict:
    with app.app_context():
        return locker.balances(store(), email)


def flashes(page: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(r'<p class="flash [^"]*" role="status">([^<]*)</p>', page)]


def essential_from_the_form(app, clock, name: str, *extra_vouchers):
    """A new partner who activated Essential on 2025-06-01 through the Activate page: client, email, activation."""
    clock("2025-06-01")
    client, email = new_partner(app, name, *ESSENTIAL_VOUCHERS, *extra_vouchers)
    client.post("/activate", data=form_of(client.get("/activate?" + ESSENTIAL_QUERY).text, "/activate"))
    [parent] = activations_of(app, email)
    return client, email, parent


def activation_id_of(page: str) -> str:
    return re.search(r'<output id="activation-id">([^<]+)</output>', page).group(1)


# --- finding 1: a refresh, Back and resubmit, a double click ------------------------------------------------


def test_activating_then_refreshing_and_resubmitting_issues_one_activation_id_and_debits_once(app, clock):
    clock("2026-12-02")
    client, email = new_partner(app, "refresher", *ESSENTIAL_VOUCHERS)
    page = client.get("/activate?" + ESSENTIAL_QUERY).text
    assert "Your locker covers it" in page
    form = form_of(page, "/activate")
    first = client.post("/activate", data=form)
    assert first.status_code == 303 and first.location.startswith("/activations/ACT-")
    result = client.get(first.location)
    activation_id = activation_id_of(result.text)
    assert f"Activated: your Activation ID is {activation_id}." in flashes(result.text)
    for _ in range(3):  # F5 on the result page: a GET of the stored activation
        again = client.get(first.location)
        assert again.status_code == 200 and activation_id_of(again.text) == activation_id
        assert "1 × <code>EPO-ESS-SUB-3Y</code>" in again.text
    # Back to the form and press the button again: the locker is empty now, the first ID is shown again.
    resent = client.post("/activate", data=form, follow_redirects=True)
    assert activation_id_of(resent.text) == activation_id
    assert "nothing was done a second time" in " ".join(flashes(resent.text))
    assert "short of" not in resent.text
    assert [item.id for item in activations_of(app, email)] == [activation_id]
    assert balances_of(app, email) == {}


def test_the_activate_page_shown_again_replays_and_activating_another_license_is_a_choice(app, clock):
    """Back may fetch the form page again: it keeps the first key, and a second licence takes its own button."""
    clock("2026-12-02")
    client, email = new_partner(app, "twice", *ESSENTIAL_VOUCHERS, *ESSENTIAL_VOUCHERS)
    page = client.get("/activate?" + ESSENTIAL_QUERY).text
    assert 'id="sent-before"' not in page and 'id="activate-another"' not in page
    first = client.post("/activate", data=form_of(page, "/activate")).location
    again = client.get("/activate?" + ESSENTIAL_QUERY).text
    assert 'id="sent-before"' in again and f'href="{first}"' in again
    replayed = client.post("/activate", data=form_of(again, "/activate"))
    assert replayed.location == first and len(activations_of(app, email)) == 1
    another = re.findall(r'<form method="post" action="/activate">(.*?)</form>', again, re.S)[1]
    assert 'id="activate-another"' in another
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', another))
    second = client.post("/activate", data={name: html.unescape(value) for name, value in fields.items()})
    assert second.location.startswith("/activations/ACT-") and second.location != first
    assert len(activations_of(app, email)) == 2 and balances_of(app, email) == {}


def test_redeeming_a_code_then_resubmitting_the_form_credits_it_once_and_says_so(app):
    client, email = new_partner(app, "redeemer")
    [code] = issue(app, "EPO-DEV-SUB-3Y", 25)
    form = {**form_of(client.get("/locker").text, "/locker/redeem"), "code": code}
    first = client.post("/locker/redeem", data=form)
    assert first.status_code == 303 and first.location == "/locker"
    shown = client.get("/locker").text
    assert any(text.startswith("Voucher") and "redeemed: 25 x EPO-DEV-SUB-3Y" in text for text in flashes(shown))
    resent = client.post("/locker/redeem", data=form, follow_redirects=True).text
    assert "already been redeemed" not in resent and "already redeemed" not in resent
    assert any("redeemed: 25 x EPO-DEV-SUB-3Y (balance 25)" in text for text in flashes(resent))
    assert balances_of(app, email) == {"EPO-DEV-SUB-3Y": 25}
    # The same form sent back with another code is another redemption.
    [other] = issue(app, "EPO-DEV-SUB-3Y", 5)
    client.post("/locker/redeem", data={**form, "code": other})
    assert balances_of(app, email) == {"EPO-DEV-SUB-3Y": 30}


def test_invitation_and_acceptance_forms_sent_twice_have_one_effect(app):
    owner, owner_email = new_partner(app, "inviter", ("EPO-DEV-SUB-3Y", 3))
    guest, guest_email = new_partner(app, "invitee", ("EPO-DEV-SUB-3Y", 4))
    invite = {**form_of(owner.get("/locker").text, "/locker/invite"), "email": guest_email}
    assert owner.post("/locker/invite", data=invite).status_code == 303
    owner.post("/locker/invite", data=invite)
    with app.app_context():
        [invitation] = locker.pending_invitations(store(), guest_email)
    accept = form_of(guest.get("/locker").text, "/locker/accept")
    assert accept["invitation"] == invitation.id
    first = guest.post("/locker/accept", data=accept, follow_redirects=True).text
    assert any(text.startswith("You now share locker") for text in flashes(first))
    again = guest.post("/locker/accept", data=accept, follow_redirects=True).text
    assert "was accepted on" not in again and any(text.startswith("You now share locker") for text in flashes(again))
    assert balances_of(app, guest_email) == balances_of(app, owner_email) == {"EPO-DEV-SUB-3Y": 7}


def test_amending_with_activation_then_resubmitting_debits_once(app, clock):
    client, email, parent = essential_from_the_form(app, clock, "amender", ("EPO-AMD-ESS-ADV", 33))
    clock("2025-09-01")
    url = f"/subscriptions/{parent.id}/amend"
    preview = client.get(url + "?tier=advanced&devices=100").text
    assert "<strong>33 months</strong>" in preview
    form = form_of(preview, url)
    assert form["date"] == "2025-09-01"  # the previewed date, by default the server's
    clock("2025-09-02")  # the tab was left open overnight: the quote no longer holds
    stale = client.post(url, data=form)
    assert stale.status_code == 422 and "date-not-today" in stale.text and len(activations_of(app, email)) == 1
    clock("2025-09-01")
    first = client.post(url, data=form)
    assert first.status_code == 303
    amendment_id = activation_id_of(client.get(first.location).text)
    for _ in range(3):
        assert activation_id_of(client.get(first.location).text) == amendment_id
    resent = client.post(url, data=form, follow_redirects=True).text
    assert activation_id_of(resent) == amendment_id and "already-changed" not in resent
    assert [item.id for item in activations_of(app, email)] == [parent.id, amendment_id]
    assert "EPO-AMD-ESS-ADV" not in balances_of(app, email)  # 33 debited once, none left


def test_copying_a_project_twice_with_one_form_makes_one_copy(app):
    client, email = new_partner(app, "copier")
    page = client.get("/configure?" + ESSENTIAL_QUERY).text
    client.post("/projects", data={**form_of(page, "/projects"), "name": "Original"})
    with app.app_context():
        [project] = accounts.list_projects(store(), email)
    form = form_of(client.get("/projects").text, f"/projects/{project.id}/copy")
    client.post(f"/projects/{project.id}/copy", data=form)
    client.post(f"/projects/{project.id}/copy", data=form)
    with app.app_context():
        assert sorted(item.name for item in accounts.list_projects(store(), email)) == ["Original", "Original (copy)"]


def test_the_activation_page_is_the_partners_own(app, clock):
    clock("2026-12-02")
    client, _ = new_partner(app, "owner-of-page", *ESSENTIAL_VOUCHERS)
    location = client.post("/activate", data=form_of(client.get("/activate?" + ESSENTIAL_QUERY).text,
                                                     "/activate")).location
    stranger, _ = new_partner(app, "stranger-of-page")
    assert stranger.get(location).status_code == 403
    assert client.get("/activations/ACT-2222-2222-2222-2222").status_code == 404
    assert client.get("/activations/not-an-id").status_code == 422


# --- finding 1, the API: Idempotency-Key ---------------------------------------------------------------------


def test_an_api_activation_replayed_five_times_has_one_effect_and_identical_answers(app, client, clock):
    clock("2026-12-02")
    _, email = new_partner(app, "api-replay", *ESSENTIAL_VOUCHERS)
    headers = {**token_for(client, email), "Idempotency-Key": "order-4711-activation"}
    answers = [client.post("/api/v1/activate", json={"configuration": ESSENTIAL}, headers=headers) for _ in range(5)]
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.get_data() for answer in answers}) == 1
    assert answers[0].json["activated"] is True
    assert "Idempotent-Replayed" not in answers[0].headers
    assert all(answer.headers["Idempotent-Replayed"] == "true" for answer in answers[1:])
    assert len(activations_of(app, email)) == 1 and balances_of(app, email) == {}
    without_key = client.post("/api/v1/activate", json={"configuration": ESSENTIAL}, headers=token_for(client, email))
    assert without_key.json["activated"] is False  # a request without a key is a new request


def test_an_idempotency_key_reused_for_another_request_is_refused_and_changes_nothing(app, client):
    _, email = new_partner(app, "api-reuse")
    [first, second] = issue(app, "EPO-DEV-SUB-3Y", 10, 2)
    headers = {**token_for(client, email), "Idempotency-Key": "k-1"}
    assert client.post("/api/v1/redeem", json={"code": first}, headers=headers).status_code == 200
    reused = client.post("/api/v1/redeem", json={"code": second}, headers=headers)
    assert reused.status_code == 422 and reused.json["error"]["code"] == "idempotency-key-reused"
    assert reused.json["error"]["path"] == "Idempotency-Key"
    assert balances_of(app, email) == {"EPO-DEV-SUB-3Y": 10}
    elsewhere = client.post("/api/v1/activate", json={"configuration": ESSENTIAL}, headers=headers)
    assert elsewhere.status_code == 422 and elsewhere.json["error"]["code"] == "idempotency-key-reused"


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "clé"])
def test_a_malformed_idempotency_key_is_a_400_at_the_header(client, bearer, key):
    response = client.post("/api/v1/redeem", json={"code": "AAAAA-AAAAA-AAAAA-AAAAA"},
                           headers={**bearer, "Idempotency-Key": key.encode("utf-8").decode("latin-1")})
    assert response.status_code == 400 and response.json["error"]["code"] == "bad-idempotency-key"


def test_keys_belong_to_their_user(app, client):
    _, ann = new_partner(app, "key-ann")
    _, bob = new_partner(app, "key-bob")
    [for_ann, for_bob] = issue(app, "EPO-DEV-SUB-3Y", 2, 2)
    for email, code in ((ann, for_ann), (bob, for_bob)):
        answer = client.post("/api/v1/redeem", json={"code": code},
                             headers={**token_for(client, email), "Idempotency-Key": "same-key"})
        assert answer.status_code == 200 and "Idempotent-Replayed" not in answer.headers
    assert balances_of(app, ann) == balances_of(app, bob) == {"EPO-DEV-SUB-3Y": 2}


def test_a_shortfall_is_not_remembered_so_the_same_key_activates_once_the_vouchers_are_there(app, client, clock):
    clock("2026-12-02")
    _, email = new_partner(app, "api-short")
    headers = {**token_for(client, email), "Idempotency-Key": "retry-after-buying"}
    short = client.post("/api/v1/activate", json={"configuration": ESSENTIAL}, headers=headers)
    assert short.json["activated"] is False
    for reference, quantity in ESSENTIAL_VOUCHERS:
        [code] = issue(app, reference, quantity)
        client.post("/api/v1/redeem", json={"code": code}, headers=token_for(client, email))
    done = client.post("/api/v1/activate", json={"configuration": ESSENTIAL}, headers=headers)
    assert done.json["activated"] is True and "Idempotent-Replayed" not in done.headers
    again = client.post("/api/v1/activate", json={"configuration": ESSENTIAL}, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_data() == done.get_data()


def test_an_api_amendment_replayed_returns_the_first_answer_not_already_changed(app, client, clock):
    clock("2025-06-01")
    _, email = new_partner(app, "api-amend", *ESSENTIAL_VOUCHERS, ("EPO-AMD-ESS-ADV", 33))
    bearer = token_for(client, email)
    parent = client.post("/api/v1/activate", json={"configuration": ESSENTIAL}, headers=bearer).json
    clock("2025-09-01")
    body = {"activation_id": parent["activation"]["id"], "change": {"tier": "advanced"}, "activate": True}
    headers = {**bearer, "Idempotency-Key": "amend-1"}
    first = client.post("/api/v1/amend", json=body, headers=headers)
    second = client.post("/api/v1/amend", json=body, headers=headers)
    assert first.status_code == second.status_code == 200 and first.get_data() == second.get_data()
    assert first.json["activation"]["activation"]["debits"] == {"EPO-AMD-ESS-ADV": 33}
    assert len(activations_of(app, email)) == 2


# --- finding 2: the server decides the dates of debits ---------------------------------------------------------


def test_the_reported_amendment_dated_2028_05_31_is_refused_and_today_charges_18_months(app, client, clock):
    """EPO Essential from 2025-06-01, on a server whose date is 2026-12-02: 18 months, not 1, and no ID at once."""
    clock("2025-06-01")
    _, email = new_partner(app, "future-amend", *ESSENTIAL_VOUCHERS, ("EPO-AMD-ESS-ADV", 18))
    bearer = token_for(client, email)
    parent = client.post("/api/v1/activate", json={"configuration": ESSENTIAL}, headers=bearer).json["activation"]
    clock("2026-12-02")
    body = {"activation_id": parent["id"], "change": {"date": "2028-05-31", "tier": "advanced"}, "activate": True}
    refused = client.post("/api/v1/amend", json=body, headers=bearer)
    assert refused.status_code == 422 and refused.json["error"]["code"] == "date-not-today"
    assert refused.json["error"]["path"] == "change.date" and "2026-12-02" in refused.json["error"]["message"]
    assert len(activations_of(app, email)) == 1 and balances_of(app, email) == {"EPO-AMD-ESS-ADV": 18}
    quote = client.post("/api/v1/amend", json={**body, "activate": False}, headers=bearer)
    assert quote.status_code == 200 and quote.json["term"]["months"] == 1  # a quote may use any date of the term
    done = client.post("/api/v1/amend", json={**body, "change": {"tier": "advanced"}}, headers=bearer).json
    assert done["term"]["date"] == "2026-12-02" and done["term"]["months"] == 18
    assert done["activation"]["activation"]["debits"] == {"EPO-AMD-ESS-ADV": 18}
    assert done["activation"]["activation"]["activated_on"] == "2026-12-02"


@pytest.mark.parametrize("day", ["2026-12-01", "2026-12-03", "2029-11-30", "2020-01-01"])
def test_an_api_activation_dated_another_day_is_refused(app, client, clock, day):
    clock("2026-12-02")
    _, email = new_partner(app, f"dated-{day}", *ESSENTIAL_VOUCHERS)
    response = client.post("/api/v1/activate", json={"configuration": ESSENTIAL, "date": day},
                           headers=token_for(client, email))
    assert response.status_code == 422 and response.json["error"]["code"] == "date-not-today"
    assert response.json["error"]["path"] == "date"
    assert activations_of(app, email) == [] and balances_of(app, email) == dict(ESSENTIAL_VOUCHERS)
    today = client.post("/api/v1/activate", json={"configuration": ESSENTIAL, "date": "2026-12-02"},
                        headers=token_for(client, email))
    assert today.json["activation"]["term_start"] == "2026-12-02"


def test_a_renewal_activated_with_another_date_is_refused_but_quoted_at_any_date(app, client, clock):
    clock("2025-06-01")
    _, email = new_partner(app, "renewer", *ESSENTIAL_VOUCHERS, *ESSENTIAL_VOUCHERS)
    bearer = token_for(client, email)
    parent = client.post("/api/v1/activate", json={"configuration": ESSENTIAL}, headers=bearer).json["activation"]
    clock("2028-05-01")
    body = {"activation_id": parent["id"], "renewal": {"date": "2028-07-01"}, "activate": True}
    refused = client.post("/api/v1/renew", json=body, headers=bearer)
    assert refused.status_code == 422 and refused.json["error"]["path"] == "renewal.date"
    quote = client.post("/api/v1/renew", json={**body, "activate": False}, headers=bearer)
    assert quote.status_code == 200 and quote.json["valid"] is True
    done = client.post("/api/v1/renew", json={**body, "renewal": {}}, headers=bearer).json
    assert done["activation"]["activated"] is True
    assert done["activation"]["activation"]["term_start"] == "2028-06-01"  # the new term starts at the old end


def test_the_amend_page_quotes_any_date_but_activates_only_today(app, clock):
    client, email, parent = essential_from_the_form(app, clock, "page-dates", ("EPO-AMD-ESS-ADV", 36))
    clock("2026-12-02")
    url = f"/subscriptions/{parent.id}/amend"
    beyond = client.get(url + "?date=2029-11-30&tier=advanced").text
    assert "Not possible" in beyond and 'id="activate-change"' not in beyond  # 2029 is past the term's end
    late = client.get(url + "?date=2028-05-31&tier=advanced").text
    assert "<strong>1 months</strong>" in late and 'id="activate-change"' not in late and 'id="quote-only"' in late
    today = client.get(url + "?tier=advanced").text
    assert "<strong>18 months</strong>" in today and 'id="activate-change"' in today
    # A form posted with another date (an old tab, a crafted request) is refused, nothing debited.
    form = {**form_of(today, url), "date": "2029-11-30"}
    refused = client.post(url, data=form)
    assert refused.status_code == 422 and "date-not-today" in refused.text and "2026-12-02" in refused.text
    assert len(activations_of(app, email)) == 1 and balances_of(app, email)["EPO-AMD-ESS-ADV"] == 36


def test_the_activate_page_has_no_date_and_a_posted_date_is_refused(app, clock):
    clock("2026-12-02")
    client, email = new_partner(app, "page-activate-date", *ESSENTIAL_VOUCHERS)
    page = client.get("/activate?" + ESSENTIAL_QUERY).text
    assert 'name="date"' not in page and "dated today, 2026-12-02" in page
    refused = client.post("/activate", data={**form_of(page, "/activate"), "date": "2025-06-01"})
    assert refused.status_code == 422 and "date-not-today" in refused.text
    assert activations_of(app, email) == []


def amended_through_the_api(app, clock, name: str, change: dict, *extra_vouchers):
    """A new partner who activated Essential on 2025-06-01 and amended it on 2025-09-01 through the API."""
    clock("2025-06-01")
    client, email = new_partner(app, name, *ESSENTIAL_VOUCHERS, *extra_vouchers)
    bearer = token_for(app.test_client(), email)
    parent = client.post("/api/v1/activate", json={"configuration": ESSENTIAL}, headers=bearer).json["activation"]
    clock("2025-09-01")
    amended = client.post("/api/v1/amend", json={"activation_id": parent["id"], "change": change, "activate": True},
                          headers=bearer).json["activation"]["activation"]
    return client, amended


def test_an_amended_subscription_previews_with_its_default_date(app, clock):
    """Regression: on any subscription already amended, the amend form's default date was refused (before-parent)."""
    client, amended = amended_through_the_api(app, clock, "amend-again", {"tier": "advanced"},
                                              ("EPO-AMD-ESS-ADV", 33), ("EPO-AMD-ADV-EXP", 33))
    listing = client.get("/subscriptions").text
    form = re.search(rf'<form method="get" action="/subscriptions/{amended["id"]}/amend".*?</form>', listing, re.S)
    default = re.search(r'name="date" value="([^"]+)"', form.group(0)).group(1)
    assert default == "2025-09-01"
    preview = client.get(f"/subscriptions/{amended['id']}/amend?date={default}&tier=expert")
    assert preview.status_code == 200 and "before-parent" not in preview.text


# --- the clock -------------------------------------------------------------------------------------------------


def test_the_servers_date_is_the_vendors_calendar_day():
    for name in ("Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Paris"):
        assert Clock(zone(name)).today() == datetime.now(ZoneInfo(name)).date()
    assert Clock(fixed=date(2026, 12, 2)).today() == date(2026, 12, 2)
    with pytest.raises(CompanionError) as refused:
        zone("Europe/Pariss")
    assert refused.value.problems[0].code == "bad-time-zone" and "Europe/Paris" in refused.value.problems[0].hint


# --- finding 5: the renewal and amendment forms start from the subscription as it stands -----------------------


def default_query(page: str, action: str) -> str:
    """Return the query string the GET form posting to ACTION would send untouched (its defaults)."""
    form = re.search(rf'<form method="get" action="{re.escape(action)}".*?</form>', page, re.S).group(0)
    pairs = re.findall(r'<input type="(?:date|number)" [^>]*name="([^"]+)" value="([^"]*)"', form)
    for name, options in re.findall(r'<select name="([^"]+)">(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', options) or re.search(r'<option value="([^"]*)"',
                                                                                       options)
        pairs.append((name, chosen.group(1)))
    return "&".join(f"{name}={value}" for name, value in pairs if value)


def test_after_an_upgrade_to_105_devices_the_renewal_form_proposes_the_current_valid_configuration(app, clock):
    client, amended = amended_through_the_api(app, clock, "renew-defaults", {"tier": "advanced", "devices": 105},
                                              ("EPO-AMD-ESS-ADV", 33), ("EPO-AMD-DEV", 10_000))
    stands = amended["configuration"]
    assert stands["tier"] == "advanced"
    listing = client.get("/subscriptions").text
    for action in ("renew", "amend"):
        url = f"/subscriptions/{amended['id']}/{action}"
        query = default_query(listing, url)
        assert f"tier={stands['tier']}" in query and f"devices={stands['devices']}" in query, query
    renewal = client.get(f"/subscriptions/{amended['id']}/renew?" + default_query(listing, url.replace("amend",
                                                                                                     "renew")))
    assert renewal.status_code == 200 and "The renewal is possible" in renewal.text, renewal.text[-2000:]

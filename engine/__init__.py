"""Companion: a rules-driven configurator for software licences. This module is its public API: re-exports only.

A rules directory becomes a checked catalogue (`load_catalog`), compiled once (`load`), and requests are
decided over it (`evaluate`, `options`, `amend`, `renew`); the services turn verdicts into files and orders
(`export_csv`, `checkout`, `update_guide`). What debits a locker (`activate_configuration`, `activate_change`)
is loaded on first use: importing SQLAlchemy and the locker costs every `companion check` about 0.5 s.
The storage itself is `engine.locker`; errors and their outcomes are `engine.problem`.
"""

from __future__ import annotations

import importlib

from engine.catalogue.files import RULE_FILES
from engine.catalogue.load import load_catalog, rules_of, warnings_of
from engine.catalogue.policies.guidance import MODES as GUIDANCE_MODES
from engine.catalogue.model import FIRST_DAY, LAST_DAY, PERPETUAL, SUBSCRIPTION, Catalog, Product
from engine.catalogue.schema import BUNDLED_RULES, SCHEMA_DIR, json_path
from engine.catalogue.source import MAX_DEPTH, SURROGATE, Source, display_path, no_json_constant
from engine.clock import DEFAULT_ZONE, TIME_ZONE_VARIABLE, Clock, server_clock, zone
from engine.inference.compile import CompiledCatalog, compile_catalog, load
from engine.inference.evaluate import Verdict, evaluate
from engine.inference.options import options
from engine.inference.request import Request, request_from_data, schema_problems
from engine.problem import CompanionError, Location, Problem, did_you_mean, exit_status, http_status
from engine.services.changes import AmendmentRequest, amendment_from_data, read_amendment
from engine.services.checkout import (CheckoutFailed, CheckoutRefused, Confirmation, Order, cart_url_from, checkout,
                                      place_order, prepare_order)
from engine.services.coverage import VoucherCoverage, cover
from engine.services.exports import (CSV_MEDIA_TYPE, ExportRefused, TemplateNotAvailable, channels, export_csv,
                                     export_file_name)
from engine.services.guidance import update_guide
from engine.services.subscriptions import Amendment, Renewal, amend, renew

# Name -> the module that holds it, imported when the name is first asked for (see the docstring).
_ON_FIRST_USE = {
    "ActivationOutcome": "engine.activation",
    "activate_change": "engine.activation",
    "activate_configuration": "engine.activation",
    "check_follows": "engine.activation",
    "matching": "engine.activation",
    "requirements_of": "engine.activation",
}

__all__ = [
    "AmendmentRequest", "Amendment", "BUNDLED_RULES", "CSV_MEDIA_TYPE", "Catalog", "CheckoutFailed", "CheckoutRefused",
    "Clock", "CompanionError", "CompiledCatalog", "Confirmation", "DEFAULT_ZONE", "ExportRefused", "FIRST_DAY",
    "GUIDANCE_MODES", "LAST_DAY", "Location", "MAX_DEPTH", "Order", "PERPETUAL", "Problem", "Product", "RULE_FILES",
    "Renewal", "Request", "SCHEMA_DIR", "SUBSCRIPTION", "SURROGATE", "Source", "TIME_ZONE_VARIABLE",
    "TemplateNotAvailable", "Verdict", "VoucherCoverage", "amend", "amendment_from_data", "cart_url_from", "channels", "checkout",
    "compile_catalog", "cover", "did_you_mean", "display_path", "evaluate", "exit_status", "export_csv",
    "export_file_name", "http_status", "json_path", "load", "load_catalog", "no_json_constant", "options",
    "place_order", "prepare_order", "read_amendment", "renew", "request_from_data", "rules_of", "schema_problems",
    "server_clock", "update_guide", "warnings_of", "zone", *_ON_FIRST_USE,
]


def __getattr__(name: str):
    """Return a name that debits a locker, importing its module (and SQLAlchemy) on first use."""
    if name in _ON_FIRST_USE:
        return getattr(importlib.import_module(_ON_FIRST_USE[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")

"""Verbs over a compiled catalogue that need no database: months, changes, amend and renew, exports, checkout."""

"""Companion: a rules-driven configurator for software licences."""

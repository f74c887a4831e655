"""The behaviour snapshot of issue #14: verdicts recorded before the rule compiler's rewrite, compared after it."""

"""A catalogue and a request become a Verdict: request, compile, session (durable_rules), evaluate, explain, options."""

"""Backends: `registry` (names, requirements, availability), `base` (the protocol and the
factory), and one module per engine, imported only when a config names it."""

"""Scenarios, one module per client; importing a module registers its scenarios."""

"""Generation backends behind one ``generate(prompts, params)`` interface (lazy registry)."""

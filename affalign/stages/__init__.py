"""Ray Data stages: small classes with a cheap constructor, ``setup`` and ``__call__(batch)``."""

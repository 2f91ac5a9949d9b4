"""Affect scorers behind one interface, created lazily by name (see :mod:`affalign.scorers.registry`)."""

"""Templates for ``stadtlink new-adapter`` (see :mod:`adapters.core.scaffold`)."""

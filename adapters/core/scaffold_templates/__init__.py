"""Templates for ``stadtlink new-adapter`` (see :mod:`stadtlink.adapters.core.scaffold`)."""

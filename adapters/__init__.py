"""stadtlink adapters: the shared runtime (``adapters.core``) and one package per device family."""

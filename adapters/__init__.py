"""stadtlink adapters: the shared runtime (``stadtlink.adapters.core``) and one package per device family."""

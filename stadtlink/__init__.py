"""stadtlink: a town's sensors as FIWARE Smart Data Models entities in an NGSI-LD broker.

One import package whose subpackages live in the repository's top-level folders (see setup.py):

* ``stadtlink.adapters``      ← ``adapters/``       the adapter runtime (``core``) and one package per device family
* ``stadtlink.schemas``       ← ``schemas/``        Smart Data Models JSON Schemas, @context files, the entity check
* ``stadtlink.broker_client`` ← ``broker_client/``  the only code that speaks HTTP to a broker (plus the local broker)
"""

__version__ = "0.1.0"

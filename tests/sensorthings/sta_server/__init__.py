"""A real OGC SensorThings API v1.1 server for the tests: django-ogc-sensorthings (PyPI) on SQLite.

Configured by environment variables so each test session gets its own database and port:
``STA_DB`` (SQLite file) and ``STA_SERVICE_URL`` (``http://127.0.0.1:<port>/sensorthings``).
"""

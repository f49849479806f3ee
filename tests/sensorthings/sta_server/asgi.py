import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sta_server.settings")

from django.core.asgi import get_asgi_application

application = get_asgi_application()

"""Start the test SensorThings server: ``python run.py PORT DB_FILE`` (migrates, then serves)."""

import os
import sys
from pathlib import Path


def main() -> None:
    port, db = int(sys.argv[1]), sys.argv[2]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ["STA_DB"] = db
    os.environ["STA_SERVICE_URL"] = f"http://127.0.0.1:{port}/sensorthings"
    os.environ["DJANGO_SETTINGS_MODULE"] = "sta_server.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    import uvicorn

    uvicorn.run("sta_server.asgi:application", host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()

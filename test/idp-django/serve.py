"""Starts the test IdP: migrate a fresh SQLite file, create users and clients, run the dev server."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatehouse_idp.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402


def seed():
    call_command("migrate", verbosity=0, interactive=False)
    admins, _ = Group.objects.get_or_create(name="admins")
    for name in ("alice", "bob"):
        u = User.objects.create_user(name, f"{name}@example.com", f"{name}-password")
        u.first_name = name.capitalize()
        u.save()
        if name == "alice":
            u.groups.add(admins)
    for c in json.loads(os.environ.get("DOT_CLIENTS", "[]")):
        Application.objects.create(
            client_id=c["client_id"],
            client_secret=c["client_secret"],
            name=c["client_id"],
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            redirect_uris=" ".join(c["redirect_uris"]),
            algorithm=c.get("algorithm", "RS256"),
            skip_authorization=True,
        )


def exit_with_parent():
    """The test runner holds our stdin open; when it goes away (even killed), so do we."""
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    import threading

    threading.Thread(target=exit_with_parent, daemon=True).start()
    seed()
    port = sys.argv[1]
    print(f"dot-idp: listening on 127.0.0.1:{port}", flush=True)
    call_command("runserver", f"127.0.0.1:{port}", use_reloader=False, use_threading=True)

"""Django's command-line utility for the test IdP (serve.py is what the tests run)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatehouse_idp.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)

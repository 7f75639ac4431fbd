"""``manage.py aol_bootstrap_admin``: make sure a newcomer has a login for the console."""

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Create the superuser 'admin' with a random password, stored in var/admin-password (mode 600), "
        "unless a superuser exists already. Prints where to log in, never the password."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="Where the console will be served.")

    def handle(self, *args: Any, url: str, **options: Any) -> None:
        User = get_user_model()
        password_file = settings.BASE_DIR / "var" / "admin-password"
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write(
                f"Console: {url}  (log in with your superuser; another one: python manage.py createsuperuser)"
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username="admin", email="", password=password)
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        self.stdout.write(self.style.SUCCESS("Created the superuser 'admin'."))
        self.stdout.write(f"Console: {url}  user: admin  password: in {password_file.relative_to(settings.BASE_DIR)}")

"""``manage.py aol_token``: create, list and revoke the planner's API tokens (services/tokens.py)."""

import re
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestration.exceptions import ControlChangeRejected
from orchestration.management.commands._common import cli_actor
from orchestration.models import ApiToken, TokenScope
from orchestration.services.tokens import token_create, token_revoke

_LIFETIME = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def lifetime(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m`` or ``2w`` as a timedelta; ValueError if not."""
    match = _LIFETIME.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"--expires takes a positive whole number and a unit (m, h, d or w), e.g. 90d; got {text!r}.")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _when(value: datetime | None, empty: str = "-") -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else empty


class Command(BaseCommand):
    help = (
        "API tokens of the planner's HTTP API and MCP server. 'create NAME --scopes read,propose [--expires 90d]' "
        "prints the secret once; 'list' shows every token (never a secret); 'revoke NAME --reason …'. Scopes: "
        f"{', '.join(TokenScope.values)}. No scope can approve, switch to REAL, resume or revive."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", required=True, metavar="{create,list,revoke}")
        create = commands.add_parser("create", help="Create a token and print its secret, once.")
        create.add_argument("name", help="Who uses it, e.g. planner-prod.")
        create.add_argument("--scopes", required=True, help=f"Comma-separated, any of: {', '.join(TokenScope.values)}.")
        create.add_argument("--expires", default=None, help="Lifetime, e.g. 90d, 12h, 2w (default: never).")
        create.add_argument("--reason", default="", help="Why; recorded in the audit trail.")
        create.add_argument("--actor", default=None, help="Who (default: cli:<user>@<host>).")
        commands.add_parser("list", help="List the tokens (name, prefix, scopes, dates); never a secret.")
        revoke = commands.add_parser("revoke", help="Refuse a token from now on.")
        revoke.add_argument("name")
        revoke.add_argument("--reason", required=True, help="Why; recorded in the audit trail.")
        revoke.add_argument("--actor", default=None, help="Who (default: cli:<user>@<host>).")

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        try:
            if subcommand == "create":
                self._create(**options)
            elif subcommand == "revoke":
                self._revoke(**options)
            else:
                self._list()
        except ControlChangeRejected as exc:  # InvalidToken: a bad name, scope or lifetime; an unknown token
            raise CommandError(str(exc), returncode=2) from None

    def _create(self, *, name: str, scopes: str, expires: str | None, reason: str, actor: str | None, **_: Any) -> None:
        try:
            expires_in = lifetime(expires) if expires is not None else None
        except ValueError as exc:
            raise CommandError(str(exc), returncode=2) from None
        token, secret = token_create(
            name=name, scopes=scopes, actor=actor or cli_actor(), reason=reason, expires_in=expires_in
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Created API token {token.name} (scopes {','.join(token.scopes)}; "
                f"expires {_when(token.expires_at, 'never')})."
            )
        )
        self.stdout.write("Its secret, shown this once (store it now; only its hash is kept):")
        self.stdout.write(secret)

    def _revoke(self, *, name: str, reason: str, actor: str | None, **_: Any) -> None:
        token, changed = token_revoke(name=name, actor=actor or cli_actor(), reason=reason)
        if changed:
            self.stdout.write(self.style.SUCCESS(f"API token {token.name} revoked; it is refused from now on."))
        else:
            self.stdout.write(f"API token {token.name} was already revoked (at {_when(token.revoked_at)}).")

    def _list(self) -> None:
        tokens = list(ApiToken.objects.order_by("name"))
        if not tokens:
            self.stdout.write("No API tokens. Create one: manage.py aol_token create NAME --scopes read,propose")
            return
        header = ("name", "prefix", "scopes", "created", "expires", "last used", "revoked")
        rows = [
            (
                token.name,
                f"{token.prefix}…",
                ",".join(token.scopes),
                _when(token.created_at),
                _when(token.expires_at, "never"),
                _when(token.last_used_at, "never"),
                _when(token.revoked_at),
            )
            for token in tokens
        ]
        widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        self.stdout.write(f"{len(tokens)} token{'s' if len(tokens) != 1 else ''}.")

"""``manage.py aol_accounts``: list, add, verify, remove connected accounts and re-encrypt their credentials.

Credentials are read from standard input or a file (``--credentials-file``), never from the command
line, where other users of the machine could read them (``ps``); they are never printed.
"""

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestration.exceptions import AccountCheckFailed, ControlChangeRejected, CredentialsUnavailable
from orchestration.management.commands._common import cli_actor
from orchestration.models import Account, AccountPlatform
from orchestration.services.accounts import (
    account_add,
    account_remove,
    account_verify_by_name,
    accounts_rotate_keys,
    identity_text,
)


def _when(account: Account) -> str:
    return account.updated_at.strftime("%Y-%m-%d %H:%M:%SZ")


class Command(BaseCommand):
    help = (
        "Connected accounts REAL adapters act as. 'list' (never a credential); 'add NAME --platform P "
        "[--base-url URL]' reads the credentials as a JSON object from standard input (or --credentials-file); "
        "'verify NAME' asks the network who the credentials act as (exit 1 saying what is wrong); "
        "'remove NAME --reason …'; 'rotate-keys' re-encrypts every account with the first key of "
        f"AOL_CREDENTIALS_KEYS. Platforms: {', '.join(AccountPlatform.values)}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(
            dest="subcommand", required=True, metavar="{list,add,verify,remove,rotate-keys}"
        )
        commands.add_parser("list", help="List the accounts (name, platform, base URL, credential fields).")
        add = commands.add_parser("add", help="Add an account; credentials as a JSON object on standard input.")
        add.add_argument("name", help="What payloads name it by, e.g. brand-main.")
        add.add_argument("--platform", required=True, choices=AccountPlatform.values)
        add.add_argument("--base-url", default="", help="The instance or API base URL (required for mastodon).")
        add.add_argument(
            "--credentials-file",
            default="-",
            help='A file holding the credentials as JSON, e.g. {"access_token": "…"} (default "-": standard input).',
        )
        add.add_argument("--reason", default="", help="Why; recorded in the audit trail.")
        add.add_argument("--actor", default=None, help="Who (default: cli:<user>@<host>).")
        verify = commands.add_parser(
            "verify", help="Call the network's who-am-I endpoint as the account; say whom it acts as, or what is wrong."
        )
        verify.add_argument("name")
        remove = commands.add_parser("remove", help="Delete an account and its credentials.")
        remove.add_argument("name")
        remove.add_argument("--reason", required=True, help="Why; recorded in the audit trail.")
        remove.add_argument("--actor", default=None, help="Who (default: cli:<user>@<host>).")
        rotate = commands.add_parser("rotate-keys", help="Re-encrypt every account with the first key.")
        rotate.add_argument("--actor", default=None, help="Who (default: cli:<user>@<host>).")

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        try:
            if subcommand == "add":
                self._add(**options)
            elif subcommand == "verify":
                self._verify(options["name"])
            elif subcommand == "remove":
                account_remove(name=options["name"], actor=options["actor"] or cli_actor(), reason=options["reason"])
                self.stdout.write(self.style.SUCCESS(f"Account {options['name']} removed, with its credentials."))
            elif subcommand == "rotate-keys":
                count = accounts_rotate_keys(actor=options["actor"] or cli_actor())
                self.stdout.write(
                    self.style.SUCCESS(
                        f"{count} account{'s' if count != 1 else ''} re-encrypted with the first key of "
                        "AOL_CREDENTIALS_KEYS; keys after it can now be removed."
                    )
                )
            else:
                self._list()
        except (ControlChangeRejected, CredentialsUnavailable) as exc:  # InvalidAccount is a ControlChangeRejected
            raise CommandError(str(exc), returncode=2) from None

    def _add(
        self,
        *,
        name: str,
        platform: str,
        base_url: str,
        credentials_file: str,
        reason: str,
        actor: str | None,
        **_: Any,
    ) -> None:
        try:
            text = sys.stdin.read() if credentials_file == "-" else Path(credentials_file).read_text()
        except OSError as exc:
            raise CommandError(f"Cannot read {credentials_file}: {exc.strerror}.", returncode=2) from None
        if not text.strip():
            raise CommandError(
                'No credentials given: pipe a JSON object such as {"access_token": "…"} to standard input, '
                "or pass --credentials-file PATH.",
                returncode=2,
            )
        account = account_add(
            name=name,
            platform=platform,
            base_url=base_url,
            credentials=text,
            actor=actor or cli_actor(),
            reason=reason,
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Account {account.name} ({account.platform}) added; its credentials "
                f"({', '.join(account.credential_fields)}) are stored encrypted."
            )
        )

    def _verify(self, name: str) -> None:
        try:
            identity = account_verify_by_name(name=name)
        except AccountCheckFailed as exc:
            raise CommandError(f"{name}: {exc}", returncode=1) from None
        self.stdout.write(self.style.SUCCESS(f"ok: {identity_text(identity)}"))

    def _list(self) -> None:
        accounts = list(Account.objects.order_by("name"))
        if not accounts:
            self.stdout.write(
                "No connected accounts. Add one: manage.py aol_accounts add NAME --platform P < creds.json"
            )
            return
        header = ("name", "platform", "base URL", "credentials", "updated")
        rows = [
            (
                account.name,
                account.platform,
                account.base_url or "-",
                "encrypted: " + ", ".join(account.credential_fields),
                _when(account),
            )
            for account in accounts
        ]
        widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        self.stdout.write(f"{len(accounts)} account{'s' if len(accounts) != 1 else ''}.")

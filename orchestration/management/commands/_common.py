"""Small helpers shared by the aol_* commands."""

import argparse
import getpass
import socket


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than zero, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number greater than zero, got {text}")
    return value


def priority(text: str) -> int:
    """An action priority: a whole number from -100 to 100."""
    from orchestration.models import MAX_PRIORITY, MIN_PRIORITY

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise argparse.ArgumentTypeError(f"must be from {MIN_PRIORITY} to {MAX_PRIORITY}, got {value}")
    return value


def cli_actor() -> str:
    """Who is at the terminal, for the audit trail: ``cli:user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"

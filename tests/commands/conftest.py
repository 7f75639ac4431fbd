"""Fixtures shared by the command tests."""

import pytest


@pytest.fixture
def jsonl(tmp_path):
    def write(*lines: str) -> str:
        path = tmp_path / "actions.jsonl"
        path.write_text("".join(f"{text}\n" for text in lines), encoding="utf-8")
        return str(path)

    return write

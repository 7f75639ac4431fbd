"""`make check` type-checks orchestration/ and llm/ strictly enough that an unannotated service fails."""

import subprocess
import sys
import uuid

from tests.conftest import ROOT

SERVICES = ROOT / "orchestration" / "services"

PROBE = '''"""A service module written for one test run, then deleted."""


def widget_frobnicate(*, count):
    return count


def widget_count(*, count: int) -> int:
    return count
'''


def _mypy(*paths: str, cache_dir: str) -> subprocess.CompletedProcess[str]:
    """mypy as `make check` runs it: from the project root, so mypy.ini applies."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", cache_dir, "--no-error-summary", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_mypy__refuses_an_unannotated_service_function(tmp_path):
    module = SERVICES / f"_typing_probe_{uuid.uuid4().hex}.py"
    module.write_text(PROBE, encoding="utf-8")
    try:
        result = _mypy(str(module.relative_to(ROOT)), cache_dir=str(tmp_path / "mypy-cache"))
    finally:
        module.unlink()
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(errors) == 1, result.stdout
    assert f"{module.name}:4: error: Function is missing a type annotation" in errors[0]
    assert errors[0].endswith("[no-untyped-def]")

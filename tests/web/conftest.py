import pytest

from tests.console_fixtures import non_staff, operator, superuser, viewer  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Test users' passwords need no key stretching; PBKDF2 would dominate these tests' time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

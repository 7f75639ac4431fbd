"""Named errors of the llm app. Each docstring is the default message."""

from django.core.exceptions import ImproperlyConfigured


class LLMDisabled(ImproperlyConfigured):
    """The LLM is disabled."""

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or "").strip())


class LLMCallFailed(Exception):
    """The LLM call failed."""

    def __init__(self, message: str | None = None, *, transient: bool):
        super().__init__(message or (self.__doc__ or "").strip())
        #: True when the same call may succeed later (timeout, connection error, 429, 5xx).
        self.transient = transient

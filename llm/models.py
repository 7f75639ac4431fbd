"""What the LLM's last call did, so that every process (the console's, not only the daemon's) can say it."""

from django.db import models
from django.db.models import Q


class LLMLastCall(models.Model):
    """The outcome of the latest LLM call by any process: one row (id 1), overwritten by each call.

    "enabled" only means a key is set; this row says whether calls actually work. ``error`` is the
    client's message, which never holds the key (``LLMClient._failed`` masks it).
    """

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    ok = models.BooleanField(help_text="Whether the latest call returned a reply.")
    at = models.DateTimeField(help_text="When the latest call ended.")
    model = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True, help_text="Why the latest call failed (empty when it succeeded).")
    failures_in_row = models.PositiveIntegerField(default=0, help_text="Failed calls since the last success.")
    last_success_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "llm_last_call"
        verbose_name = "LLM last call"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="llm_last_call_singleton")]

    def __str__(self) -> str:
        return f"LLM last call {'ok' if self.ok else 'failed'} at {self.at:%Y-%m-%d %H:%M:%S}"

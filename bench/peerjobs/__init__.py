"""The peers' job: the same work as the AOL's PROOF adapter (write a small artifact, SHA-256 it)."""

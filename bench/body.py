"""The job body every contender runs: the same work as the AOL's PROOF adapter, and nothing else.

It calls the AOL's own ``artifact_write`` (temporary file, fsync, rename, directory fsync), so
every contender pays for exactly the same file work as the PROOF adapter, whatever that becomes.
Kept apart from the peers' task modules so that the "job body alone" ceiling imports no peer.
"""

from orchestration.adapters.artifacts import artifact_write

#: About the size of a POST_SOCIAL PROOF artifact with a short message.
CONTENT_BYTES = 220


def proof_body(*, key: str, folder: str) -> str:
    """Write the artifact for ``key`` under ``folder`` and return its SHA-256."""
    text = f"PROOF artifact: nothing was posted.\nkey: {key}\nplatform: twitter\n--- message ---\n"
    content = text.encode().ljust(CONTENT_BYTES, b".")
    return artifact_write(ref=f"{folder}/{key}.txt", content=content)

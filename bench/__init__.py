"""Benchmarks of the AOL engine against its peers (``make bench``; see bench/README.md)."""

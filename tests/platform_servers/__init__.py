"""Local HTTP servers on 127.0.0.1 implementing the part of each social network's public API its adapter uses."""

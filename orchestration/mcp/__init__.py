"""The MCP server of the AI planner (``python manage.py aol_mcp``): docs/mcp.md.

``tools`` holds the six tools as thin, synchronous wrappers over ``services/planner.py`` (the same
operations and scope checks as the HTTP API); ``server`` puts them behind the official ``mcp`` SDK
over stdio or streamable HTTP, with an API token per call.
"""

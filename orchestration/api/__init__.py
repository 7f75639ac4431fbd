"""The planner's interfaces: the HTTP API under /api/v1/ and the MCP server, over services/planner.py."""

"""The operator console and the health endpoints: views, their forms and access rules."""

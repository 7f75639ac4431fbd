"""What the HTTP servers the tests start on 127.0.0.1 share."""

#: ``serve_forever``'s poll interval: ``shutdown()`` waits up to this long for the loop to notice. The
#: standard library's 0.5 s default cost every test that starts a server half a second at teardown.
SHUTDOWN_POLL_SECONDS = 0.02

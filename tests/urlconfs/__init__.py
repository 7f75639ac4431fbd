"""URLconfs for tests only: placeholders for the ``orchestration:status`` view, which another part of
the project provides, so the status-view sentinel can be tested when the view renders and when it breaks."""

"""callbridge serve: the HTTP server (intake, app events, OAuth, the operator API)."""

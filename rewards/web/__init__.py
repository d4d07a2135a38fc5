"""Server-rendered web pages on the API app (issue 6)."""

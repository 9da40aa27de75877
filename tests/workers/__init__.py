"""Worker-pool applications the integration tests start in their own processes."""

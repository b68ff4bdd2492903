"""abqa router: a FastAPI service that routes questions to the arms of an A/B experiment and logs every request."""

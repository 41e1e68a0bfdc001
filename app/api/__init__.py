"""The HTTP service: FastAPI app, job queue, training worker and model registry."""

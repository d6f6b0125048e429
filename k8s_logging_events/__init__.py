"""Turn Python logging calls into Kubernetes Events, counted and aggregated like client-go."""

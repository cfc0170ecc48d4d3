"""Starting and stopping the embedded services: PostgreSQL, the tansu broker, and detached jobs."""

"""Starting and stopping the embedded services: PostgreSQL, the Apache Kafka broker (jars from
the Maven registry, :mod:`stockpulse.jars`), and detached jobs."""

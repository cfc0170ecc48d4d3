"""The replay stage: the processed CSV, read row by row (:mod:`csv_rows`), grouped into one tick per
trading date and sent to Kafka (:mod:`producer`), resuming where a killed replay left off
(:mod:`resume`). ``producer/producer.py`` is its entry point."""

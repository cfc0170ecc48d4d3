"""The embedded services the project starts: PostgreSQL with its schema, and the broker."""

from stockpulse import db
from stockpulse.kafka_offsets import topic_partitions
from stockpulse.ops.services.broker import ensure_topic


def test_init_sql_is_idempotent_and_creates_tables(database_url):
    db.apply_init_sql(database_url)  # second time: must not fail
    with db.connect(database_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"ticks_raw", "ticks_dead_letter"} <= tables


def test_topic_created_once_with_three_partitions(broker):
    assert ensure_topic(broker, "svc_topic_check", 3) is True
    assert ensure_topic(broker, "svc_topic_check", 3) is False
    assert topic_partitions(broker, "svc_topic_check") == [0, 1, 2]

"""``--client confluent`` against the real broker: every row once, the Java client's partitions,
``--resume`` on what it sent, one line for a broker that is not there."""

from __future__ import annotations

from collections import Counter

from stockpulse.replay.csv_rows import TickRow, read_rows
from stockpulse.replay.resume import key_partition
from tests.conftest import run_cli
from tests.integration.helpers import csv_slice, produced_rows
from tests.integration.replay.test_resume import topic_contents


def test_the_confluent_client_sends_each_row_once_on_the_default_clients_partitions(pipeline_env, broker, topic,
                                                                                   tmp_path):
    csv = csv_slice(tmp_path / "slice.csv", 700)
    expected = Counter((r.index, r.date) for r in read_rows(csv) if isinstance(r, TickRow))
    env = {**pipeline_env, "PRODUCER_CLIENT": "confluent"}

    sent = run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0", "--no-progress"], env)
    assert sent.returncode == 0, sent.stderr[-2000:]
    assert "(confluent)" in sent.stderr and produced_rows(sent.stderr) == sum(expected.values())
    contents = topic_contents(broker, topic)
    assert Counter(p for positions in contents.values() for p in positions) == expected
    for partition, positions in contents.items():  # librdkafka's murmur2_random is the Java client's rule
        assert all(key_partition(index.encode(), len(contents)) == partition for index, _ in positions)

    again = run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0", "--resume", "--no-progress",
                     "--client", "confluent"], pipeline_env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "sent 0 ticks (0 rows)" in again.stderr


def test_an_unreachable_broker_or_an_unknown_client_is_one_line(pipeline_env, tmp_path):
    csv = csv_slice(tmp_path / "slice.csv", 10)
    gone = run_cli(["producer/producer.py", "--csv", str(csv), "--client", "confluent",
                    "--bootstrap-servers", "127.0.0.1:1"], pipeline_env)
    assert gone.returncode == 2
    assert gone.stderr.strip().splitlines()[-1] == ("producer: error: cannot reach Kafka at 127.0.0.1:1: start it with "
                                                    "'make services' or set KAFKA_BOOTSTRAP_SERVERS")
    unknown = run_cli(["producer/producer.py", "--csv", str(csv)], {**pipeline_env, "PRODUCER_CLIENT": "rust"})
    assert unknown.returncode == 2 and "PRODUCER_CLIENT 'rust'" in unknown.stderr and "Traceback" not in unknown.stderr

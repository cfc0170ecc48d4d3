"""The embedded broker's pure parts."""


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    """``kafka-storage format -t -abc...`` reads the id as an option: one start in 64 failed so."""
    import uuid

    from stockpulse.ops.services import broker

    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=bytes(16))])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    assert broker.cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"

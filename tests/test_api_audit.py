"""The API's audit bursts are split by partition as aiokafka's ``send`` would place each record
(by its department key), in order within each partition."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from sanctiongate.api.audit import _by_partition


def test_a_burst_is_placed_by_key_as_send_would_place_it() -> None:
    departments = ["市财政局", "市场监管局", "bench", "税务局", "公安局", "法院"]
    messages = [(departments[i % 6].encode(), b"%d" % i) for i in range(60)]
    partitions = [0, 1, 2, 3]
    placed = _by_partition(messages, partitions)
    expected: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in messages:
        expected.setdefault(DefaultPartitioner()(key, partitions, partitions), []).append(
            (key, value)
        )
    assert placed == expected and len(placed) > 1

"""Request ids the API generates: shaped as before, never repeated, not even by a forked child."""

from __future__ import annotations

import os
import re

from sanctiongate.api.app import new_request_id


def test_generated_request_ids_are_distinct_and_shaped_as_uuid4_ones() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"sg-[0-9a-f]{32}", i) for i in ids), ids[:3]


def test_a_forked_process_draws_ids_of_its_own() -> None:
    parent = new_request_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first id and leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert child[:19] != parent[:19], (parent, child)  # another random prefix, not a shared count

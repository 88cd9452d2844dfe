"""A client's deadline on a stream through the mesh ends it as DEADLINE_EXCEEDED, every time.

Envoy leaves a stream's deadline to the client (mesh/routes.py): when it enforced the grpc-timeout
itself on a stream whose response had started, its reset raced the client's timer and about one
call in four ended INTERNAL. Many concurrent open watches with a short deadline show the race if it
comes back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from afctl.client import Client
from agentfactory.registry.v1 import registry_service_pb2 as reg_pb

CALLS = 60


def test_open_watches_end_at_the_clients_deadline(as_role: Callable[[str], Client]) -> None:
    viewer = as_role("viewer")

    def watch(_: int) -> str:
        stream = viewer.registry.WatchTemplates(reg_pb.WatchTemplatesRequest(), timeout=0.3, metadata=viewer.metadata)
        try:
            for _event in stream:
                pass
        except grpc.RpcError as exc:
            return exc.code().name
        return "OK"

    with ThreadPoolExecutor(20) as pool:
        codes = Counter(pool.map(watch, range(CALLS)))
    assert codes == Counter({"DEADLINE_EXCEEDED": CALLS}), codes

"""Templates and listings that several e2e tests publish or read through the gateway."""

from __future__ import annotations

import json

from afctl.client import Client
from afctl.examples import catalogue
from agentfactory.scheduler.v1 import scheduler_service_pb2 as S


def publish_spinner(publisher: Client, name: str, description: str, fuel: int, retryable: bool = False) -> str:
    """Publish hostile-loop-export and a child `name`@1.0.0 of it: an endless loop that ends on its fuel
    (a 30 s deadline), the same way wherever it runs. Returns `name`."""
    (parent,) = [t for t in catalogue("hostile") if t.name == "hostile-loop-export"]
    publisher.publish(parent.manifest_json(), parent.module())
    child: dict[str, object] = {
        "name": name,
        "version": "1.0.0",
        "extends": parent.ref,
        "description": description,
        "limits": {"fuel": fuel, "timeout_ms": 30_000},
    }
    if retryable:
        child["retryable"] = True
    publisher.publish(json.dumps(child).encode(), None)
    return name


def publish_retryable_spinner(publisher: Client, name: str) -> str:
    """The spinner the loss tests kill a process under: fuel for a few seconds, re-run after a lost run."""
    description = "hostile-loop-export, retryable, with fuel for a few seconds"
    return publish_spinner(publisher, name, description, fuel=4_000_000_000, retryable=True)


def list_agent_ids(client: Client, label_selector: str, page_size: int = 7) -> list[str]:
    """Every agent id ListAgents returns for the selector, page by page (whichever color serves each page)."""
    ids: list[str] = []
    token = ""
    while True:
        request = S.ListAgentsRequest(label_selector=label_selector, page_size=page_size, page_token=token)
        page = client.scheduler.ListAgents(request, timeout=10, metadata=client.metadata)
        ids += [a.id for a in page.agents]
        token = page.next_page_token
        if not token:
            return ids

"""A webhook receiver for Alertmanager: every notification appended as one JSON line, and one log
line per alert (status, name, severity, summary, runbook) on stdout.

    python -m observability.alert_sink --listen 127.0.0.1:9095 --out var/alerts/alerts.jsonl

`make run` supervises it behind the local Alertmanager; tests run the same class in process.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 1 << 20  # Alertmanager batches alerts per group; a megabyte is far beyond one group.


class AlertSink:
    """Receives Alertmanager webhook POSTs; keeps them in memory and (optionally) in a file."""

    def __init__(self, listen: str = "127.0.0.1:0", out: Path | None = None) -> None:
        host, port = listen.rsplit(":", 1)
        self.out = out
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length <= 0 or length > MAX_BODY:
                    self.send_error(413 if length > MAX_BODY else 400, "body must be 1 byte to 1 MiB")
                    return
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError:
                    self.send_error(400, "body is not JSON")
                    return
                sink.receive(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:  # requests are logged as alerts instead
                pass

        self.server = ThreadingHTTPServer((host, int(port)), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/alerts"
        self._thread: threading.Thread | None = None

    def receive(self, notification: dict[str, Any]) -> None:
        with self._lock:
            self.notifications.append(notification)
            if self.out:
                self.out.parent.mkdir(parents=True, exist_ok=True)
                with self.out.open("a") as f:
                    f.write(json.dumps(notification, sort_keys=True) + "\n")
        for alert in notification.get("alerts", []):
            labels, notes = alert.get("labels", {}), alert.get("annotations", {})
            print(
                f"{alert.get('status', '?')}: {labels.get('alertname')} severity={labels.get('severity')}"
                f" {notes.get('summary', '')} runbook={notes.get('runbook_url', '-')}",
                flush=True,
            )

    def alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a for n in self.notifications for a in n.get("alerts", [])]

    def start(self) -> AlertSink:
        self._thread = threading.Thread(target=self.server.serve_forever, name="alert-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observability.alert_sink", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:9095")
    parser.add_argument("--out", type=Path, default=Path("var/alerts/alerts.jsonl"))
    args = parser.parse_args(argv)
    sink = AlertSink(args.listen, args.out)
    print(f"alert sink on {sink.url}, writing {args.out}", flush=True)
    sink.server.serve_forever()  # until supervisord's SIGTERM
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Turn `mesh/ca.py` output into chart values: every workload's certificate and key, the CA
bundle and the gateway's JWKS, so the chart creates the Secrets and ConfigMaps itself.

    .venv/bin/python -m mesh.ca issue                       # build/certs (make certs)
    .venv/bin/python helm/mesh-certs-values.py build/certs > certs-values.yaml
    helm install af helm/agentfactory -f certs-values.yaml

The output holds private keys: keep it out of git and out of shared values files. For anything
long-lived prefer cert-manager (see helm/README.md); this is for labs, CI and kind clusters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def certificate_values(certs_dir: Path, workloads: list[str] | None = None) -> dict[str, object]:
    """values.certificates from a mesh.ca directory (workloads/<id>/{cert,key}.pem, ca/, jwt/)."""
    root = certs_dir / "workloads"
    ids = workloads or sorted(p.name for p in root.iterdir() if p.is_dir())
    pairs = {}
    for wid in ids:
        d = root / wid
        if not (d / "cert.pem").exists():
            raise SystemExit(f"{d}/cert.pem missing: run `make certs` first")
        pairs[wid] = {"cert": (d / "cert.pem").read_text(), "key": (d / "key.pem").read_text()}
    return {
        "certificates": {
            "trustBundle": (certs_dir / "ca" / "bundle.pem").read_text(),
            "jwks": (certs_dir / "jwt" / "jwks.json").read_text(),
            "workloads": pairs,
        }
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("certs_dir", type=Path, help="what `python -m mesh.ca issue` wrote (build/certs)")
    args = parser.parse_args(argv)
    sys.stdout.write(yaml.safe_dump(certificate_values(args.certs_dir), sort_keys=False, width=1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())

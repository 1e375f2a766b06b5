#!/usr/bin/env python3
"""Write Prometheus file_sd targets for a desktop `rdd svc` instance (docs/observability.md).

The supervised processes listen on free ports chosen at each start; `children.json` in the
instance directory names them. The API server's /metrics needs a client certificate: the admin
kubeconfig's is written next to the targets. Standard library only.

  targets.py [--instance NAME] [--out DIR] [--watch]
"""
import argparse
import base64
import json
import os
import time


def instance_dir(name):
    # As rdd computes it: ~/.local/share/rancher-desktop-<RDD_INSTANCE, default 2>.
    return os.path.expanduser(f"~/.local/share/rancher-desktop-{name or '2'}")


def write(path, data, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def once(inst, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(inst, "children.json")) as f:
        children = json.load(f)
    groups = [
        {"targets": [c["admin_addr"]], "labels": {"process": c["name"]}}
        for c in children
        if c.get("admin_addr") and c.get("state") == "running"
    ]
    write(os.path.join(out, "processes.json"), json.dumps(groups, indent=2).encode())
    with open(os.path.join(inst, "config.yaml")) as f:
        kc = json.load(f)  # rdd writes its kubeconfig as JSON, which is YAML
    server = kc["clusters"][0]["cluster"]["server"].removeprefix("https://")
    write(os.path.join(out, "apiserver.json"),
          json.dumps([{"targets": [server], "labels": {"process": "rdd-apiserver"}}]).encode())
    user = kc["users"][0]["user"]
    write(os.path.join(out, "ca.crt"),
          base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]))
    write(os.path.join(out, "client.crt"), base64.b64decode(user["client-certificate-data"]))
    # Readable by the Prometheus container's user; keep the directory private instead.
    write(os.path.join(out, "client.key"), base64.b64decode(user["client-key-data"]), 0o644)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instance", default=os.environ.get("RDD_INSTANCE", ""))
    p.add_argument("--out", default=os.path.join(here, "targets"))
    p.add_argument("--watch", action="store_true", help="rewrite every 5 s")
    a = p.parse_args()
    inst = instance_dir(a.instance)
    os.makedirs(a.out, mode=0o700, exist_ok=True)
    while True:
        try:
            once(inst, a.out)
        except (OSError, ValueError, KeyError) as e:
            print(f"targets.py: {e}", flush=True)
        if not a.watch:
            break
        time.sleep(5)


if __name__ == "__main__":
    main()

"""Read a container's logs through rdd's API (controllers.md §4.15) as a UI would: a WebSocket
to /passthrough/engine/logs/<id> on the API server, authenticated with the instance kubeconfig's
client certificate.

    ws_logs.py KUBECONFIG PATH [SECONDS]

Writes every binary message to stdout as it arrives. Exit status: 0 after a close 1000; 1 after
another close code (printed on stderr); 2 when the server answered plain HTTP instead of
upgrading ("HTTP <status> <body>" on stderr); 3 when SECONDS (default 30) passed first.
"""

import base64
import json
import os
import ssl
import sys
import tempfile
import time

import websocket


def main() -> int:
    kubeconfig, path = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    with open(kubeconfig, encoding="utf-8") as f:
        cfg = json.load(f)
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    tmp = tempfile.mkdtemp()
    files = {}
    for key, field in (
        ("ca", cluster["certificate-authority-data"]),
        ("cert", user["client-certificate-data"]),
        ("key", user["client-key-data"]),
    ):
        files[key] = os.path.join(tmp, key + ".pem")
        with open(files[key], "wb") as f:
            f.write(base64.b64decode(field))
    url = cluster["server"].replace("https://", "wss://", 1) + path
    deadline = time.monotonic() + seconds
    try:
        ws = websocket.create_connection(
            url,
            timeout=seconds,
            sslopt={
                "cert_reqs": ssl.CERT_REQUIRED,
                "ca_certs": files["ca"],
                "certfile": files["cert"],
                "keyfile": files["key"],
                "check_hostname": False,
            },
        )
    except websocket.WebSocketBadStatusException as e:
        body = (e.resp_body or b"").decode("utf-8", "replace").strip()
        print(f"HTTP {e.status_code} {body}", file=sys.stderr)
        return 2
    out = sys.stdout.buffer
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return 3
        ws.settimeout(left)
        try:
            opcode, data = ws.recv_data(control_frame=False)
        except websocket.WebSocketTimeoutException:
            return 3
        except websocket.WebSocketConnectionClosedException:
            print("closed without a close frame", file=sys.stderr)
            return 1
        if opcode == websocket.ABNF.OPCODE_BINARY:
            out.write(data)
            out.flush()
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
            if code == 1000:
                return 0
            print(f"close {code} {data[2:].decode('utf-8', 'replace')}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())

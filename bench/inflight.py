"""Memory under concurrent large requests: starts `contrail` (CONTRAIL_BIN), sends N
concurrent gRPC requests of SIZE MiB each (CreateTask with one huge container argument,
refused for its size after decoding), and reports the server's peak resident memory
(VmHWM) before and after. Usage: python bench/inflight.py [N] [SIZE_MIB] [-- contrail start flags...]"""
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import grpc
from flyteidl.admin import task_pb2
from flyteidl.core import identifier_pb2, tasks_pb2
from flyteidl.service import admin_pb2_grpc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main():
    args = sys.argv[1:]
    extra = args[args.index("--") + 1:] if "--" in args else []
    args = args[:args.index("--")] if "--" in args else args
    n = int(args[0]) if len(args) > 0 else 8
    size = int(args[1]) if len(args) > 1 else 60
    binary = os.environ.get("CONTRAIL_BIN", "target/release/contrail")
    port, s3 = free_port(), free_port()
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen([binary, "start", "--addr", f"127.0.0.1:{port}", "--s3-addr", f"127.0.0.1:{s3}",
                                 "--data-dir", d, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=1)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            before = peak_kib(proc.pid)
            req = task_pb2.TaskCreateRequest(
                id=identifier_pb2.Identifier(resource_type=identifier_pb2.TASK, project="flytesnacks",
                                             domain="development", name="big", version="v1"),
                spec=task_pb2.TaskSpec(template=tasks_pb2.TaskTemplate(
                    type="python-task", container=tasks_pb2.Container(image="x", args=["x" * (size << 20)]))))
            codes = []

            def send():
                channel = grpc.insecure_channel(f"127.0.0.1:{port}",
                                                options=[("grpc.max_send_message_length", 256 << 20)])
                try:
                    admin_pb2_grpc.AdminServiceStub(channel).CreateTask(req, timeout=120)
                    codes.append("OK")
                except grpc.RpcError as e:
                    codes.append(e.code().name)

            threads = [threading.Thread(target=send) for _ in range(n)]
            start = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.monotonic() - start
            after = peak_kib(proc.pid)
            print(f"{n} concurrent {size} MiB requests in {took:.1f} s: answers {sorted(set(codes))}; "
                  f"peak RSS {before / 1024:.0f} MiB before, {after / 1024:.0f} MiB after")
        finally:
            proc.terminate()
            proc.wait(timeout=15)


if __name__ == "__main__":
    main()

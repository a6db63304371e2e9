#!/usr/bin/env python3
"""Streaming through the embedded S3 endpoint: one large object uploaded (multipart, as
boto3's transfer manager and s3fs send large files) and downloaded again, against a fresh
`contrail start`. Reports MB/s each way next to a plain `cp` of the same file on the same
disk, and the server's peak RSS (VmHWM), which must stay far below the object's size.

A benchmark, not a test: results go to docs/benchmarks.md by hand.

    target/release/contrail must exist (cargo build --release -p contrail)
    .venv/bin/python bench/s3_stream.py --mib 1024
"""
import argparse
import hashlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_hwm_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "contrail"))
    ap.add_argument("--dir", default=None, help="where the data directory and files go")
    args = ap.parse_args()

    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    work = pathlib.Path(tempfile.mkdtemp(dir=args.dir))
    src = work / "src.bin"
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for _ in range(args.mib):
            f.write(block)
    size = args.mib * (1 << 20)

    t = time.perf_counter()
    shutil.copyfile(src, work / "cp.bin")
    cp_s = time.perf_counter() - t
    os.remove(work / "cp.bin")

    api, s3port = free_port(), free_port()
    server = subprocess.Popen(
        [args.bin, "start", "--addr", f"127.0.0.1:{api}", "--s3-addr", f"127.0.0.1:{s3port}",
         "--data-dir", str(work / "data")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{api}/healthcheck", timeout=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        rss_idle = vm_hwm_mib(server.pid)
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3port}", aws_access_key_id="contrail",
                          aws_secret_access_key="contrail-secret", region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
        transfer = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)

        t = time.perf_counter()
        s3.upload_file(str(src), "contrail", "bench/big.bin", Config=transfer)
        up_s = time.perf_counter() - t
        rss_up = vm_hwm_mib(server.pid)

        t = time.perf_counter()
        s3.download_file("contrail", "bench/big.bin", str(work / "back.bin"), Config=transfer)
        down_s = time.perf_counter() - t
        rss_down = vm_hwm_mib(server.pid)

        # One plain GET of the whole object (a single streamed response).
        t = time.perf_counter()
        digest = hashlib.md5()
        body = s3.get_object(Bucket="contrail", Key="bench/big.bin")["Body"]
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
        get_s = time.perf_counter() - t
        rss_get = vm_hwm_mib(server.pid)

        same = hashlib.md5(open(src, "rb").read()).hexdigest() == digest.hexdigest()
        assert same and os.path.getsize(work / "back.bin") == size, "round trip changed the data"
        mb = size / 1e6
        print(f"| object | {args.mib} MiB |")
        print("|---|---|")
        print(f"| cp (same disk) | {mb / cp_s:.0f} MB/s |")
        print(f"| upload (multipart, 64 MiB parts, 4 at once) | {mb / up_s:.0f} MB/s |")
        print(f"| download (ranged GETs, 4 at once) | {mb / down_s:.0f} MB/s |")
        print(f"| one streamed GET | {mb / get_s:.0f} MB/s |")
        print(f"| server peak RSS: idle / after upload / after download / after GET | "
              f"{rss_idle:.0f} / {rss_up:.0f} / {rss_down:.0f} / {rss_get:.0f} MiB |")
        if rss_get >= 100:
            print("peak RSS is not below 100 MiB", file=sys.stderr)
            return 1
        return 0
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

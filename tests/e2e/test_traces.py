"""`--otlp-endpoint`: spans of RPCs and controller passes reach an OpenTelemetry collector
over OTLP/HTTP, carrying the execution's name. The collector here is a small HTTP receiver
that keeps what it is sent (the spans are protobuf; their names and attribute values are
plain strings inside it)."""
import http.server
import os
import threading

import pytest

from conftest import Server, client_config, execute, finish, free_port, register_module, wait_until


class Collector:
    def __init__(self):
        self.bodies = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.bodies.append((self.path, self.headers.get("Content-Type"), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def seen(self, *needles):
        data = b"".join(b for _, _, b in self.bodies)
        return all(n in data for n in needles)

    def close(self):
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    collector = Collector()
    d = tmp_path_factory.mktemp("traced")
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "100"
    server = Server(d / "data", d / "server.log", ["--otlp-endpoint", collector.url])
    try:
        server.start()
    finally:
        os.environ.pop("OTEL_BSP_SCHEDULE_DELAY", None)
    yield server, collector
    server.stop()
    server.kill_tasks()
    collector.close()


def test_rpc_and_reconcile_spans_carry_the_execution(traced, tmp_path_factory):
    server, collector = traced
    config = client_config(tmp_path_factory.mktemp("cfg") / "config.yaml", server.port,
                           f"http://localhost:{server.s3_port}", ("contrail", "contrail-secret"))
    version = register_module(config, tmp_path_factory, "console")
    r, ex = execute(config, version, "console.square_wf", x=3)
    finish(r, ex)
    name = ex.id.name.encode()
    wait_until(lambda: collector.seen(b"reconcile", name), 30, "a reconcile span of the execution")
    wait_until(lambda: collector.seen(b"/flyteidl.service.AdminService/CreateExecution", b"rpc"), 30,
               "the CreateExecution RPC span")
    assert all(path == "/v1/traces" and ctype == "application/x-protobuf" for path, ctype, _ in collector.bodies)
    assert collector.seen(b"contrail"), "the service name"

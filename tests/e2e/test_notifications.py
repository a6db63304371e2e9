"""Notifications through flytekit to a local SMTP sink and a local HTTP sink (Slack and
PagerDuty webhooks): one message per listed terminal phase, across a kill -9, and delivered
once the sink comes back after failing."""
import json
import socketserver
import threading
import http.server

import pytest
from conftest import (Server, execute, finish, free_port, register_module, wait_until)


class SmtpSink(socketserver.ThreadingTCPServer):
    """Just enough SMTP to accept mail: records (recipients, message text)."""
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self):
        self.mails = []
        super().__init__(("127.0.0.1", 0), SmtpHandler)


class SmtpHandler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write((line + "\r\n").encode())

    def handle(self):
        self.reply("220 sink ESMTP")
        rcpt, data = [], None
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode().rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 sink")
            elif verb == "MAIL":
                rcpt = []
                self.reply("250 OK")
            elif verb == "RCPT":
                rcpt.append(cmd.split(":", 1)[1].strip(" <>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 go on")
                lines = []
                while True:
                    l = self.rfile.readline().decode()
                    if l in (".\r\n", ".\n", ""):
                        break
                    lines.append(l)
                data = "".join(lines)
                self.server.mails.append((sorted(rcpt), data))
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 OK")


class HttpSink(http.server.ThreadingHTTPServer):
    """Records JSON POSTs by path; answers 503 while `down`."""
    daemon_threads = True

    def __init__(self):
        self.posts, self.refused, self.down = [], 0, False
        super().__init__(("127.0.0.1", 0), HttpHandler)


class HttpHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.server.down:
            self.server.refused += 1
            self.send_response(503)
        else:
            self.server.posts.append((self.path, json.loads(body)))
            self.send_response(202)
        self.send_header("content-length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def sinks():
    smtp, web = SmtpSink(), HttpSink()
    for s in (smtp, web):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield smtp, web
    for s in (smtp, web):
        s.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory, sinks):
    smtp, web = sinks
    d = tmp_path_factory.mktemp("notify")
    web_url = f"http://127.0.0.1:{web.server_address[1]}"
    (d / "contrail.toml").write_text(
        "[notifications]\n"
        'sender = "contrail@example.com"\n'
        f'smtp_url = "smtp://127.0.0.1:{smtp.server_address[1]}"\n'
        f'slack_webhook_url = "{web_url}/slack"\n'
        f'pagerduty_url = "{web_url}/pagerduty"\n'
        'pagerduty_routing_key = "routing-key"\n'
    )
    s = Server(d / "data", d / "server.log", args=["--config", str(d / "contrail.toml")])
    s.start()
    yield s
    s.stop()
    s.kill_tasks()


@pytest.fixture(scope="module")
def config(server, tmp_path_factory):
    return server.write_config(tmp_path_factory.mktemp("cfg") / "config.yaml")


@pytest.fixture(scope="module")
def version(config, tmp_path_factory):
    return register_module(config, tmp_path_factory, "notifications")


def mails_about(smtp, name):
    return [m for m in smtp.mails if name in m[1]]


def posts_about(web, path, name):
    return [b for p, b in web.posts if p == path and name in json.dumps(b)]


def test_a_success_sends_one_email_and_one_slack_message(config, version, sinks):
    smtp, web = sinks
    r, ex = execute(config, version, "notified", x=3)
    ex = finish(r, ex)
    assert ex.outputs["o0"] == 6
    name = ex.id.name
    wait_until(lambda: mails_about(smtp, name) and posts_about(web, "/slack", name), what="delivery")
    [(to, text)] = mails_about(smtp, name)
    assert to == ["lead@example.com", "team@example.com"]
    assert "SUCCEEDED" in text and f"/executions/{name}" in text
    [slack] = posts_about(web, "/slack", name)
    assert "SUCCEEDED" in slack["text"]
    assert not posts_about(web, "/pagerduty", name), "PagerDuty listed only FAILED"


def test_a_failure_pages_once_after_a_kill_9_and_the_sink_coming_back(server, config, version, sinks):
    smtp, web = sinks
    web.down = True
    refused_before = web.refused
    r, ex = execute(config, version, "notified", x=-1)
    ex = finish(r, ex)
    name = ex.id.name
    assert ex.closure.phase == 6  # FAILED
    # The page is attempted and refused while the sink is down ...
    wait_until(lambda: web.refused > refused_before, what="a refused delivery")
    # ... the server is killed and restarted, and the sink comes back.
    server.kill9()
    server.start()
    web.down = False
    wait_until(lambda: posts_about(web, "/pagerduty", name), deadline_s=60, what="the page")
    wait_until(lambda: mails_about(smtp, name), what="the failure email")
    [page] = posts_about(web, "/pagerduty", name)
    assert page["routing_key"] == "routing-key"
    assert page["event_action"] == "trigger"
    assert page["payload"]["severity"] == "error"
    assert "negative input" in page["payload"]["custom_details"]["reason"]
    assert len(mails_about(smtp, name)) == 1
    assert not posts_about(web, "/slack", name), "Slack listed only SUCCEEDED"

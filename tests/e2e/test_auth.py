"""Authentication, authorization and TLS as flytekit speaks them: `authType: ClientSecret`
against Contrail's own token endpoint over TLS (`admin.insecure: false` +
`caCertFilePath`), static tokens through `authType: ExternalCommand`, tokens of an
external OIDC issuer (a small local issuer fixture), and refusals of unauthenticated,
cross-project and under-privileged calls."""
import base64
import datetime
import http.server
import json
import os
import shutil
import ssl
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from flyteidl.admin import execution_pb2, project_pb2
from flyteidl.core import identifier_pb2
from flyteidl.service import admin_pb2_grpc
from flytekit.models.core.execution import WorkflowExecutionPhase as WP

from conftest import BIN, Server, free_port, task_env, wait_until
from test_executions import HERE, PYFLYTE, remote

ISSUER_AUDIENCE = "contrail-api"


def make_tls(d):
    """A private CA and a server certificate for localhost/127.0.0.1 it signed (PEM files)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "contrail test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d / "ca.pem", d / "cert.pem", d / "key.pem"


class Issuer:
    """A minimal external OIDC issuer: discovery document and JWKS over HTTP, RS256 tokens."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        pub = self.key.public_key().public_numbers()

        def b64(n):
            return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

        jwks = {"keys": [{"kty": "RSA", "kid": "idp-1", "alg": "RS256", "use": "sig", "n": b64(pub.n), "e": b64(pub.e)}]}
        docs = {"/.well-known/openid-configuration": {"issuer": self.url, "jwks_uri": f"{self.url}/keys"},
                "/keys": jwks}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                body = json.dumps(docs.get(self.path, {})).encode()
                self.send_response(200 if self.path in docs else 404)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, sub, audience=ISSUER_AUDIENCE, ttl=600):
        now = int(time.time())
        return jwt.encode({"iss": self.url, "aud": audience, "sub": sub, "iat": now, "exp": now + ttl},
                          self.key, algorithm="RS256", headers={"kid": "idp-1"})

    def close(self):
        self.httpd.shutdown()


class SecureServer(Server):
    """A contrail with auth and TLS on; health is checked over HTTPS against the test CA."""

    def __init__(self, d, ca, args):
        super().__init__(d / "data", d / "contrail.log", args)
        self.ca = ca

    def start(self):
        assert BIN.exists(), f"build the binary first: {BIN}"
        env = {**task_env(), "SSL_CERT_FILE": str(self.ca), "AWS_CA_BUNDLE": str(self.ca),
               "REQUESTS_CA_BUNDLE": str(self.ca)}
        self.proc = subprocess.Popen(
            [str(BIN), "start", "--addr", f"127.0.0.1:{self.port}", "--s3-addr", f"127.0.0.1:{self.s3_port}",
             "--data-dir", str(self.data_dir), *self.args],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env)
        ctx = ssl.create_default_context(cafile=str(self.ca))
        url = f"https://localhost:{self.port}/healthcheck"
        wait_until(lambda: urllib.request.urlopen(url, timeout=1, context=ctx).status == 200,
                   what="contrail healthcheck over TLS")


def cli(data_dir, *args):
    p = subprocess.run([str(BIN), "auth", "--data-dir", str(data_dir), *args], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    d = tmp_path_factory.mktemp("secure")
    ca, cert, key = make_tls(d)
    issuer = Issuer()
    data = d / "data"
    secrets = {
        "ci": cli(data, "client", "add", "ci", "--role", "editor:flytesnacks"),
        "watcher": cli(data, "client", "add", "watcher", "--role", "viewer:flytesnacks"),
        "reader": cli(data, "client", "add", "reader", "--role", "viewer:flytesnacks"),
        "stranger": cli(data, "client", "add", "stranger", "--role", "admin:elsewhere"),
        "root": cli(data, "client", "add", "root", "--role", "admin"),
        "bot": cli(data, "token", "add", "bot", "--role", "editor:flytesnacks"),
    }
    (d / "contrail.toml").write_text(
        "[auth]\n"
        "[auth.oidc]\n"
        f'issuer = "{issuer.url}"\n'
        f'audience = "{ISSUER_AUDIENCE}"\n'
        "[auth.oidc.subjects]\n"
        'alice = ["viewer:flytesnacks"]\n'
        "[auth.task_policy]\n"
        'task_types = ["python-task"]\n')
    server = SecureServer(d, ca, ["--config", str(d / "contrail.toml"), "--tls-cert", str(cert),
                                  "--tls-key", str(key)])
    server.start()
    server.dir, server.secrets, server.issuer = d, secrets, issuer
    yield server
    server.stop()
    server.kill_tasks()
    issuer.close()


def flytekit_config(server, name, auth_lines):
    """The flytekit config a user of this server writes: TLS with the CA, and an authType."""
    path = server.dir / f"{name}.yaml"
    path.write_text(
        "admin:\n"
        f"  endpoint: localhost:{server.port}\n"
        "  insecure: false\n"
        f"  caCertFilePath: {server.ca}\n"
        + "".join(f"  {line}\n" for line in auth_lines)
        + "storage:\n"
        "  connection:\n"
        f"    endpoint: https://localhost:{server.s3_port}\n"
        "    access-key: contrail\n"
        "    secret-key: contrail-secret\n")
    return path


def client_secret_config(server, client):
    secret_file = server.dir / f"{client}.secret"
    secret_file.write_text(server.secrets[client] + "\n")
    return flytekit_config(server, client, ["authType: ClientSecret", f"clientId: {client}",
                                            f"clientSecretLocation: {secret_file}"])


def client_env(server):
    """Uploads go to signed HTTPS URLs and the S3 endpoint: the client trusts the test CA."""
    return {**os.environ, "REQUESTS_CA_BUNDLE": str(server.ca), "AWS_CA_BUNDLE": str(server.ca),
            "SSL_CERT_FILE": str(server.ca)}


def stub(server, token=None):
    creds = grpc.ssl_channel_credentials(server.ca.read_bytes())
    channel = grpc.secure_channel(f"localhost:{server.port}", creds)
    metadata = [("flyte-authorization", f"Bearer {token}")] if token else []
    return admin_pb2_grpc.AdminServiceStub(channel), metadata


def token_for(server, client):
    req = urllib.request.Request(
        f"https://localhost:{server.port}/oauth2/token", data=b"grant_type=client_credentials&scope=all",
        headers={"Authorization": "Basic " + base64.b64encode(f"{client}:{server.secrets[client]}".encode()).decode(),
                 "Content-Type": "application/x-www-form-urlencoded"})
    ctx = ssl.create_default_context(cafile=str(server.ca))
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        body = json.loads(r.read())
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    return body["access_token"]


def code_of(call):
    try:
        call()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def exec_id(name="x"):
    return identifier_pb2.WorkflowExecutionIdentifier(project="flytesnacks", domain="development", name=name)


@pytest.fixture(scope="module")
def registered(secure):
    """`pyflyte register` by the editor client, over TLS with ClientSecret."""
    config = client_secret_config(secure, "ci")
    wf = secure.dir / "wf-ci"
    wf.mkdir()
    shutil.copy(HERE / "workflows" / "propeller.py", wf / "propeller.py")
    p = subprocess.run([PYFLYTE, "-c", str(config), "register", "--version", "auth1", "propeller.py"],
                       cwd=wf, capture_output=True, text=True, timeout=300, env=client_env(secure))
    assert p.returncode == 0, p.stdout + p.stderr
    return "auth1"


def test_a_client_secret_client_registers_and_runs_a_workflow_over_tls(secure, registered, monkeypatch):
    config = client_secret_config(secure, "ci")
    for k, v in client_env(secure).items():
        monkeypatch.setenv(k, v)
    r = remote(config)
    ex = r.execute(r.fetch_launch_plan(name="propeller.hello_wf", version=registered), inputs={"name": "tls"})
    ex = r.wait(ex, timeout=datetime.timedelta(seconds=120), poll_interval=datetime.timedelta(seconds=1))
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == "hello tls"


def test_calls_without_a_valid_token_are_unauthenticated(secure):
    admin, _ = stub(secure)
    req = project_pb2.ProjectListRequest()
    assert code_of(lambda: admin.ListProjects(req))[0] == grpc.StatusCode.UNAUTHENTICATED
    for bad in ["not-a-token", "a.b.c", token_for(secure, "ci")[:-4] + "AAAA"]:
        code, _ = code_of(lambda: admin.ListProjects(req, metadata=[("flyte-authorization", f"Bearer {bad}")]))
        assert code == grpc.StatusCode.UNAUTHENTICATED, bad
    # An expired token of the external issuer, and one for another audience.
    for bad in [secure.issuer.token("alice", ttl=-120), secure.issuer.token("alice", audience="elsewhere")]:
        code, _ = code_of(lambda: admin.ListProjects(req, metadata=[("authorization", f"Bearer {bad}")]))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    ctx = ssl.create_default_context(cafile=str(secure.ca))
    base = f"https://localhost:{secure.port}"
    # Open: health, the OAuth2 metadata, the JWKS. Closed: everything else.
    meta = json.loads(urllib.request.urlopen(f"{base}/.well-known/oauth-authorization-server", context=ctx).read())
    assert meta["token_endpoint"] == f"{base}/oauth2/token"
    keys = json.loads(urllib.request.urlopen(f"{base}/oauth2/jwks", context=ctx).read())["keys"]
    assert keys and all(k["kty"] == "OKP" for k in keys)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{base}/contrail.db", context=ctx)
    assert e.value.code == 401
    wrong = urllib.request.Request(f"{base}/oauth2/token", data=b"grant_type=client_credentials",
                                   headers={"Authorization": "Basic " + base64.b64encode(b"ci:wrong").decode()})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(wrong, context=ctx)
    assert e.value.code == 401 and json.loads(e.value.read())["error"] == "invalid_client"
    # Plain HTTP on the TLS port gets nowhere.
    with pytest.raises(Exception):
        urllib.request.urlopen(f"http://127.0.0.1:{secure.port}/healthcheck", timeout=5)


def test_other_projects_are_invisible_and_viewers_cannot_change_anything(secure):
    root, _ = stub(secure)
    root_md = [("flyte-authorization", f"Bearer {token_for(secure, 'root')}")]
    root.RegisterProject(project_pb2.ProjectRegisterRequest(
        project=project_pb2.Project(id="elsewhere", name="elsewhere")), metadata=root_md)
    admin, _ = stub(secure)
    stranger = [("flyte-authorization", f"Bearer {token_for(secure, 'stranger')}")]
    watcher = [("flyte-authorization", f"Bearer {token_for(secure, 'watcher')}")]
    ci = [("flyte-authorization", f"Bearer {token_for(secure, 'ci')}")]
    # A client of another project sees nothing of flytesnacks: not in lists, not by id.
    projects = admin.ListProjects(project_pb2.ProjectListRequest(), metadata=stranger)
    assert [p.id for p in projects.projects] == ["elsewhere"]
    from flyteidl.admin import common_pb2
    lst = common_pb2.ResourceListRequest(id=common_pb2.NamedEntityIdentifier(project="flytesnacks",
                                                                            domain="development"), limit=10)
    code, details = code_of(lambda: admin.ListExecutions(lst, metadata=stranger))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "flytesnacks" in details
    get = execution_pb2.WorkflowExecutionGetRequest(id=exec_id("x"))
    assert code_of(lambda: admin.GetExecution(get, metadata=stranger))[0] == grpc.StatusCode.PERMISSION_DENIED
    # A viewer reads, and may not create, terminate or register.
    admin.ListExecutions(lst, metadata=watcher)
    create = execution_pb2.ExecutionCreateRequest(project="flytesnacks", domain="development", name="nope",
                                                  spec=execution_pb2.ExecutionSpec())
    code, details = code_of(lambda: admin.CreateExecution(create, metadata=watcher))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "edit" in details
    term = execution_pb2.ExecutionTerminateRequest(id=exec_id("x"), cause="no")
    assert code_of(lambda: admin.TerminateExecution(term, metadata=watcher))[0] == grpc.StatusCode.PERMISSION_DENIED
    # An editor may not register projects; nothing was stored.
    reg = project_pb2.ProjectRegisterRequest(project=project_pb2.Project(id="mine", name="mine"))
    assert code_of(lambda: admin.RegisterProject(reg, metadata=ci))[0] == grpc.StatusCode.PERMISSION_DENIED
    ids = [p.id for p in admin.ListProjects(project_pb2.ProjectListRequest(), metadata=root_md).projects]
    assert "mine" not in ids and "elsewhere" in ids


def test_static_tokens_through_external_command_and_external_issuer_tokens(secure, monkeypatch):
    for k, v in client_env(secure).items():
        monkeypatch.setenv(k, v)
    token_file = secure.dir / "bot.token"
    token_file.write_text(secure.secrets["bot"])
    config = flytekit_config(secure, "bot", ["authType: ExternalCommand", "command:",
                                             "  - cat", f"  - {token_file}"])
    r = remote(config)
    assert any(p.id == "flytesnacks" for p in r.client.list_projects_paginated(limit=10)[0])
    # An OIDC token of the configured issuer, for a subject with viewer rights.
    admin, _ = stub(secure)
    alice = [("authorization", f"Bearer {secure.issuer.token('alice')}")]
    assert [p.id for p in admin.ListProjects(project_pb2.ProjectListRequest(), metadata=alice).projects] == \
        ["flytesnacks"]
    create = execution_pb2.ExecutionCreateRequest(project="flytesnacks", domain="development", name="nope",
                                                  spec=execution_pb2.ExecutionSpec())
    assert code_of(lambda: admin.CreateExecution(create, metadata=alice))[0] == grpc.StatusCode.PERMISSION_DENIED
    # A subject the configuration does not name has no roles.
    bob = [("authorization", f"Bearer {secure.issuer.token('bob')}")]
    assert list(admin.ListProjects(project_pb2.ProjectListRequest(), metadata=bob).projects) == []
    # Removing a client revokes its tokens at once.
    token = token_for(secure, "watcher")
    cli(secure.data_dir, "client", "rm", "watcher")
    req = project_pb2.ProjectListRequest()
    wait_until(lambda: code_of(lambda: admin.ListProjects(req, metadata=[("flyte-authorization", f"Bearer {token}")]))[0]
               == grpc.StatusCode.UNAUTHENTICATED, 10, "the removed client's token refused")


def test_private_files_are_private(secure):
    d = secure.data_dir
    for f in [d / "signing.key", d / "contrail.db", d / "auth" / "clients.toml"]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    for f in [d, d / "auth", d / "auth" / "keys", d / "secrets"]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o700, f


def test_without_auth_a_non_loopback_address_is_refused_unless_insisted(tmp_path):
    port = free_port()
    args = [str(BIN), "start", "--addr", f"0.0.0.0:{port}", "--s3-addr", f"127.0.0.1:{free_port()}",
            "--data-dir", str(tmp_path / "data")]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60, env=task_env())
    assert p.returncode != 0 and "--insecure-allow-remote" in p.stderr, p.stderr
    proc = subprocess.Popen([*args, "--insecure-allow-remote"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=task_env())
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=1).status == 200,
                   what="the insecure server")
    finally:
        proc.terminate()
        out = proc.communicate(timeout=15)[0].decode()
    assert "WITHOUT authentication" in out


def test_the_task_policy_keeps_raw_containers_from_non_admins(secure, registered):
    """`[auth.task_policy] task_types = ["python-task"]`: an editor may not start a workflow
    with a raw container (it would run a host command); an admin may."""
    admin, _ = stub(secure)
    lp = identifier_pb2.Identifier(resource_type=identifier_pb2.LAUNCH_PLAN, project="flytesnacks",
                                   domain="development", name="propeller.container_wf", version=registered)
    create = execution_pb2.ExecutionCreateRequest(project="flytesnacks", domain="development", name="raw-by-editor",
                                                  spec=execution_pb2.ExecutionSpec(launch_plan=lp))
    ci = [("flyte-authorization", f"Bearer {token_for(secure, 'ci')}")]
    code, details = code_of(lambda: admin.CreateExecution(create, metadata=ci))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "raw-container" in details, details
    get = execution_pb2.WorkflowExecutionGetRequest(id=exec_id("raw-by-editor"))
    assert code_of(lambda: admin.GetExecution(get, metadata=ci))[0] == grpc.StatusCode.NOT_FOUND
    root = [("flyte-authorization", f"Bearer {token_for(secure, 'root')}")]
    create.name = "raw-by-admin"
    admin.CreateExecution(create, metadata=root)
    got = admin.GetExecution(execution_pb2.WorkflowExecutionGetRequest(id=exec_id("raw-by-admin")), metadata=root)
    assert got.spec.metadata.principal == "root"
    admin.TerminateExecution(execution_pb2.ExecutionTerminateRequest(id=exec_id("raw-by-admin"), cause="test"),
                             metadata=root)


def test_each_client_has_its_own_s3_key_pair_that_ends_with_the_client(secure):
    import boto3
    import botocore.config
    import botocore.exceptions

    def s3(access, secret):
        return boto3.client("s3", endpoint_url=f"https://localhost:{secure.s3_port}", aws_access_key_id=access,
                            aws_secret_access_key=secret, region_name="us-east-1", verify=str(secure.ca),
                            config=botocore.config.Config(s3={"addressing_style": "path"},
                                                          retries={"max_attempts": 1}))

    cli(secure.data_dir, "client", "add", "s3user", "--role", "viewer:flytesnacks")
    access, secret = cli(secure.data_dir, "client", "s3-keys", "s3user").split()
    assert access == "s3user" and len(secret) == 40
    mine = s3(access, secret)
    mine.put_object(Bucket="contrail", Key="scratch/s3user.txt", Body=b"mine")
    assert mine.get_object(Bucket="contrail", Key="scratch/s3user.txt")["Body"].read() == b"mine"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3(access, secret[:-1] + ("A" if secret[-1] != "A" else "B")).list_objects_v2(Bucket="contrail")
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    cli(secure.data_dir, "client", "rm", "s3user")

    def refused():
        try:
            mine.list_objects_v2(Bucket="contrail")
        except botocore.exceptions.ClientError as err:
            return err.response["Error"]["Code"] == "InvalidAccessKeyId"
        return False
    wait_until(refused, 10, "the removed client's S3 keys refused")


def test_rest_console_metrics_and_logs_take_the_same_credentials(secure):
    """The REST API, the console's cookie, /metrics and /logs are behind the same guard and
    the same per-project grants as gRPC; the console's assets are open (they hold no data)."""
    ctx = ssl.create_default_context(cafile=str(secure.ca))
    base = f"https://localhost:{secure.port}"

    def call(path, headers=None, method="GET", data=None):
        req = urllib.request.Request(base + path, headers=headers or {}, method=method, data=data)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    executions = "/api/v1/executions/flytesnacks/development?limit=5"
    status, body = call(executions)
    assert status == 401 and json.loads(body)["code"] == 16, body
    bearer = lambda client: {"Authorization": f"Bearer {token_for(secure, client)}"}
    status, body = call(executions, bearer("reader"))
    assert status == 200 and "executions" in json.loads(body), body
    # The console sends its signed-in token as a cookie.
    cookie = {"Cookie": f"contrail_token={token_for(secure, 'reader')}"}
    assert call(executions, cookie)[0] == 200
    # Another project's client is refused per project, with gRPC's code.
    status, body = call(executions, bearer("stranger"))
    assert status == 403 and json.loads(body)["code"] == 7 and "flytesnacks" in json.loads(body)["message"]
    # A viewer may not register a project over REST either; nothing is stored.
    status, body = call("/api/v1/projects", {**bearer("reader"), "Content-Type": "application/json"}, "POST",
                        json.dumps({"project": {"id": "viarest", "name": "viarest"}}).encode())
    assert status == 403, body
    assert b"viarest" not in call("/api/v1/projects", bearer("root"))[1]
    # Metrics and logs need a token; the console's assets do not.
    assert call("/metrics")[0] == 401
    status, body = call("/metrics", bearer("reader"))
    assert status == 200 and b"process_open_fds" in body
    assert call("/logs/flytesnacks/development/x/n0/0/0")[0] == 401
    assert call("/logs/flytesnacks/development/x/n0/0/0", bearer("stranger"))[0] == 403
    assert call("/logs/flytesnacks/development/x/n0/0/0", bearer("reader"))[0] == 404
    assert call("/console/projects/flytesnacks/domains/development/executions")[0] == 200
    assert call("/console/assets/app.js")[0] == 200

"""DataProxy: signed upload/download URLs, Content-MD5 checks, traversal-proof keys."""
import base64
import hashlib
import urllib.error
import urllib.request

import grpc
import pytest
from flyteidl.service import dataproxy_pb2, dataproxy_pb2_grpc

PROJECT, DOMAIN = "flytesnacks", "development"


def dp(server):
    return dataproxy_pb2_grpc.DataProxyServiceStub(grpc.insecure_channel(server.endpoint))


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def location(server, body, filename="data.bin", root=""):
    md5 = hashlib.md5(body).digest()
    resp = dp(server).CreateUploadLocation(dataproxy_pb2.CreateUploadLocationRequest(
        project=PROJECT, domain=DOMAIN, filename=filename, content_md5=md5, filename_root=root,
        add_content_md5_metadata=True))
    return resp, md5


def test_upload_lands_at_the_flyte_layout_and_downloads_back(server):
    body = b"some bytes"
    resp, md5 = location(server, body, root="ROOT==")
    assert resp.native_url.endswith(f"/{PROJECT}/{DOMAIN}/ROOT==/data.bin"), resp.native_url
    assert resp.native_url.startswith("s3://contrail/")
    status, _ = http("PUT", resp.signed_url, body, {"Content-MD5": base64.b64encode(md5).decode(), **resp.headers})
    assert status in (200, 201)
    dl = dp(server).CreateDownloadLocation(dataproxy_pb2.CreateDownloadLocationRequest(native_url=resp.native_url))
    assert http("GET", dl.signed_url) == (200, body)


def test_default_root_is_base32_of_the_md5(server):
    body = b"rooted"
    resp, md5 = location(server, body)
    assert f"/{base64.b32encode(md5).decode()}/data.bin" in resp.native_url


def test_a_body_that_does_not_match_the_signed_md5_is_refused(server):
    resp, _ = location(server, b"expected")
    status, _ = http("PUT", resp.signed_url, b"something else")
    assert status == 400
    dl_req = dataproxy_pb2.CreateDownloadLocationRequest(native_url=resp.native_url)
    with pytest.raises(grpc.RpcError) as e:
        dp(server).CreateDownloadLocation(dl_req)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_tampered_signature_or_key_is_forbidden(server):
    body = b"x"
    resp, _ = location(server, body)
    forged = resp.signed_url.replace("sig=", "sig=00")
    assert http("PUT", forged, body)[0] == 403
    other_key = resp.signed_url.replace("/data.bin?", "/other.bin?")
    assert http("PUT", other_key, body)[0] == 403


@pytest.mark.parametrize("field,value", [("filename", "../escape"), ("filename", "a/b"), ("filename_root", ".."),
                                         ("filename", "")])
def test_path_traversal_and_empty_names_are_invalid_argument(server, field, value):
    kwargs = dict(project=PROJECT, domain=DOMAIN, filename="f", content_md5=hashlib.md5(b"").digest())
    kwargs[field] = value
    with pytest.raises(grpc.RpcError) as e:
        dp(server).CreateUploadLocation(dataproxy_pb2.CreateUploadLocationRequest(**kwargs))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in e.value.details()


def test_a_raw_traversal_url_never_reaches_the_filesystem(server):
    url = f"http://127.0.0.1:{server.port}/upload/..%2F..%2Fetc%2Fx?expires=99999999999&sig=00"
    assert http("PUT", url, b"x")[0] in (400, 403, 404)

"""The embedded S3 endpoint against the clients Flyte tasks really use: boto3, s3fs (through
fsspec, as flytekit does) and pyarrow's S3FileSystem. The same cases run through each client
where the client can express them; protocol details only boto3 can reach (conditional
requests, Content-MD5, presigned URLs, bucket operations, auth) are boto3 cases."""
import hashlib
import io
import urllib.error
import urllib.request

import pytest

BUCKET = "contrail"
KEY, SECRET = "contrail", "contrail-secret"
MIB = 1024 * 1024


def endpoint(server):
    return f"http://127.0.0.1:{server.s3_port}"


def boto3_client(server, key=KEY, secret=SECRET, **cfg):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint(server), aws_access_key_id=key, aws_secret_access_key=secret,
        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **cfg),
    )


class Boto3:
    name = "boto3"

    def __init__(self, server):
        self.c = boto3_client(server)

    def put(self, key, data):
        self.c.put_object(Bucket=BUCKET, Key=key, Body=data)

    def get(self, key):
        return self.c.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def get_range(self, key, start, end):
        return self.c.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={start}-{end - 1}")["Body"].read()

    def exists(self, key):
        from botocore.exceptions import ClientError

        try:
            self.c.head_object(Bucket=BUCKET, Key=key)
            return True
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
            return False

    def delete(self, key):
        r = self.c.delete_object(Bucket=BUCKET, Key=key)
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 204

    def list(self, prefix):
        out, token = [], None
        while True:
            kw = {"ContinuationToken": token} if token else {}
            r = self.c.list_objects_v2(Bucket=BUCKET, Prefix=prefix, MaxKeys=3, **kw)
            out += [o["Key"] for o in r.get("Contents", [])]
            if not r["IsTruncated"]:
                return out
            token = r["NextContinuationToken"]

    def copy(self, src, dst):
        self.c.copy_object(Bucket=BUCKET, Key=dst, CopySource={"Bucket": BUCKET, "Key": src})

    def put_big(self, key, data):
        from boto3.s3.transfer import TransferConfig

        self.c.upload_fileobj(io.BytesIO(data), BUCKET, key,
                              Config=TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB))

    def delete_many(self, keys):
        self.c.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys]})


class S3fs:
    name = "s3fs"

    def __init__(self, server):
        import fsspec

        self.fs = fsspec.filesystem(
            "s3", key=KEY, secret=SECRET, client_kwargs={"endpoint_url": endpoint(server)},
            skip_instance_cache=True, use_listings_cache=False,
        )

    def p(self, key):
        return f"{BUCKET}/{key}"

    def put(self, key, data):
        self.fs.pipe_file(self.p(key), data)

    def get(self, key):
        return self.fs.cat_file(self.p(key))

    def get_range(self, key, start, end):
        return self.fs.cat_file(self.p(key), start=start, end=end)

    def exists(self, key):
        self.fs.invalidate_cache()
        return self.fs.isfile(self.p(key))

    def delete(self, key):
        self.fs.rm_file(self.p(key))

    def list(self, prefix):
        self.fs.invalidate_cache()
        return sorted(p[len(BUCKET) + 1:] for p in self.fs.find(self.p(prefix)))

    def copy(self, src, dst):
        self.fs.copy(self.p(src), self.p(dst))

    def put_big(self, key, data):
        with self.fs.open(self.p(key), "wb", block_size=5 * MIB) as f:
            for i in range(0, len(data), MIB):
                f.write(data[i:i + MIB])

    def delete_many(self, keys):
        self.fs.rm([self.p(k) for k in keys])


class Arrow:
    name = "pyarrow"

    def __init__(self, server):
        from pyarrow import fs

        self.fs = fs.S3FileSystem(access_key=KEY, secret_key=SECRET, scheme="http", region="us-east-1",
                                  endpoint_override=f"127.0.0.1:{server.s3_port}")

    def p(self, key):
        return f"{BUCKET}/{key}"

    def put(self, key, data):
        with self.fs.open_output_stream(self.p(key)) as f:
            f.write(data)

    def get(self, key):
        with self.fs.open_input_stream(self.p(key)) as f:
            return f.read()

    def get_range(self, key, start, end):
        with self.fs.open_input_file(self.p(key)) as f:
            return f.read_at(end - start, start)

    def exists(self, key):
        from pyarrow import fs

        return self.fs.get_file_info(self.p(key)).type == fs.FileType.File

    def delete(self, key):
        self.fs.delete_file(self.p(key))

    def list(self, prefix):
        from pyarrow import fs

        infos = self.fs.get_file_info(fs.FileSelector(self.p(prefix.rstrip("/")), recursive=True))
        return sorted(i.path[len(BUCKET) + 1:] for i in infos if i.type == fs.FileType.File)

    def copy(self, src, dst):
        self.fs.copy_file(self.p(src), self.p(dst))

    def put_big(self, key, data):
        self.put(key, data)

    def delete_many(self, keys):
        for k in keys:
            self.fs.delete_file(self.p(k))


CLIENTS = [Boto3, S3fs, Arrow]


@pytest.fixture(params=CLIENTS, ids=lambda c: c.name)
def client(request, server):
    return request.param(server)


@pytest.fixture
def base(client, request):
    return f"conf/{client.name}/{request.node.originalname}"


# ---- cases that run through every client ----


def test_put_get_round_trip(client, base):
    body = b"hello, contrail" * 100
    client.put(f"{base}/obj.bin", body)
    assert client.get(f"{base}/obj.bin") == body
    client.put(f"{base}/empty", b"")
    assert client.get(f"{base}/empty") == b""


def test_missing_keys_and_prefixes_are_not_objects(client, base):
    client.put(f"{base}/a/b/c.txt", b"x")
    assert client.exists(f"{base}/a/b/c.txt")
    for k in (f"{base}/a/b", f"{base}/a/b/", f"{base}/nope", f"{base}/a"):
        assert not client.exists(k), k


def test_delete_of_a_missing_key_or_a_prefix_succeeds(client, base):
    client.put(f"{base}/a/b/c.txt", b"x")
    if client.name == "boto3":  # only boto3 sends DeleteObject for a non-object
        client.delete(f"{base}/a")
        client.delete(f"{base}/missing")
    assert client.exists(f"{base}/a/b/c.txt")
    client.delete(f"{base}/a/b/c.txt")
    assert not client.exists(f"{base}/a/b/c.txt")
    assert client.list(f"{base}/") == []


def test_listing_in_key_order_across_pages(client, base):
    keys = [f"{base}/{k}" for k in ("a.txt", "a/1", "a/2/x", "ab/c", "b", "c/d/e/f", "z")]
    for k in keys:
        client.put(k, k.encode())
    assert client.list(f"{base}/") == sorted(keys)


def test_range_reads(client, base):
    body = bytes(range(256)) * 64
    client.put(f"{base}/r", body)
    assert client.get_range(f"{base}/r", 10, 20) == body[10:20]
    assert client.get_range(f"{base}/r", 1000, len(body)) == body[1000:]


def test_copy(client, base):
    client.put(f"{base}/src", b"copy me")
    client.copy(f"{base}/src", f"{base}/dst/copied")
    assert client.get(f"{base}/dst/copied") == b"copy me"
    assert client.get(f"{base}/src") == b"copy me"


def test_large_object_goes_through_multipart(client, base):
    body = hashlib.sha256(b"seed").digest() * (12 * MIB // 32)
    client.put_big(f"{base}/big", body)
    assert client.get(f"{base}/big") == body


def test_batch_delete(client, base):
    keys = [f"{base}/d/{i}" for i in range(5)]
    for k in keys:
        client.put(k, b"1")
    client.delete_many(keys[:3])
    assert client.list(f"{base}/d/") == keys[3:]


# ---- protocol cases only boto3 can express ----


@pytest.fixture
def s3(server):
    return boto3_client(server)


def status_of(call):
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"].get("Code")
    return 200, None


def test_etag_is_md5_and_metadata_round_trips(s3):
    body = b"etag body"
    r = s3.put_object(Bucket=BUCKET, Key="conf/p/meta", Body=body, ContentType="text/csv",
                      Metadata={"owner": "flyte", "n": "1"})
    assert r["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    h = s3.head_object(Bucket=BUCKET, Key="conf/p/meta")
    assert h["ETag"] == r["ETag"] and h["ContentLength"] == len(body)
    assert h["ContentType"] == "text/csv"
    assert h["Metadata"] == {"owner": "flyte", "n": "1"}
    g = s3.get_object(Bucket=BUCKET, Key="conf/p/meta")
    assert g["Metadata"] == {"owner": "flyte", "n": "1"} and g["ContentType"] == "text/csv"


def test_head_and_get_of_missing_or_prefix_are_404(s3):
    s3.put_object(Bucket=BUCKET, Key="probe/a/b/c.txt", Body=b"x")
    for k in ("probe/a/b", "probe/a/b/", "probe/nope"):
        assert status_of(lambda: s3.head_object(Bucket=BUCKET, Key=k))[0] == 404, k
        assert status_of(lambda: s3.get_object(Bucket=BUCKET, Key=k)) == (404, "NoSuchKey"), k
    for k in ("probe/a", "probe/a/b/", "probe/zzz"):
        assert s3.delete_object(Bucket=BUCKET, Key=k)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object(Bucket=BUCKET, Key="probe/a/b/c.txt")["Body"].read() == b"x"


def test_data_bucket_cannot_be_deleted(s3):
    s3.put_object(Bucket=BUCKET, Key="conf/keep", Body=b"x")
    assert status_of(lambda: s3.delete_bucket(Bucket=BUCKET)) == (409, "BucketNotEmpty")
    assert s3.get_object(Bucket=BUCKET, Key="conf/keep")["Body"].read() == b"x"
    assert status_of(lambda: s3.delete_bucket(Bucket="other"))[0] == 404


def test_bucket_operations(s3):
    s3.head_bucket(Bucket=BUCKET)
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]
    assert s3.get_bucket_location(Bucket=BUCKET).get("LocationConstraint") in (None, "")
    assert status_of(lambda: s3.head_bucket(Bucket="nope"))[0] == 404


def test_list_v2_delimiter_start_after_and_v1(s3):
    for k in ("l/a.txt", "l/a/1", "l/a/2", "l/b", "l/c/x", "l/sp ace+plus%"):
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"1")
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="l/", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["l/a.txt", "l/b", "l/sp ace+plus%"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["l/a/", "l/c/"]
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="l/", StartAfter="l/a/1")
    assert [o["Key"] for o in r["Contents"]] == ["l/a/2", "l/b", "l/c/x", "l/sp ace+plus%"]
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="l/", Delimiter="/", MaxKeys=2)
    assert r["IsTruncated"] and r["KeyCount"] == 2
    r2 = s3.list_objects_v2(Bucket=BUCKET, Prefix="l/", Delimiter="/", ContinuationToken=r["NextContinuationToken"])
    seen = [o["Key"] for o in r.get("Contents", []) + r2.get("Contents", [])]
    seen += [p["Prefix"] for p in r.get("CommonPrefixes", []) + r2.get("CommonPrefixes", [])]
    assert sorted(seen) == ["l/a.txt", "l/a/", "l/b", "l/c/", "l/sp ace+plus%"]
    v1 = s3.list_objects(Bucket=BUCKET, Prefix="l/", MaxKeys=2)
    assert v1["IsTruncated"] and [o["Key"] for o in v1["Contents"]] == ["l/a.txt", "l/a/1"]
    v1b = s3.list_objects(Bucket=BUCKET, Prefix="l/", Marker="l/a/1")
    assert [o["Key"] for o in v1b["Contents"]][0] == "l/a/2"
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="l/", MaxKeys=0)["KeyCount"] == 0


def test_multipart_protocol(s3):
    key = "conf/mp/obj"
    up = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ContentType="application/x-parquet")["UploadId"]
    p1 = b"a" * (5 * MIB)
    p2 = b"b" * 100
    e2 = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=2, Body=p2)["ETag"]
    e1 = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=1, Body=p1)["ETag"]
    parts = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(p1)), (2, len(p2))]
    bad = {"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]}
    assert status_of(lambda: s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up, MultipartUpload=bad))[1] == "InvalidPartOrder"
    done = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    expected = hashlib.md5(hashlib.md5(p1).digest() + hashlib.md5(p2).digest()).hexdigest() + "-2"
    assert done["ETag"] == f'"{expected}"'
    h = s3.head_object(Bucket=BUCKET, Key=key)
    assert h["ContentLength"] == len(p1) + len(p2) and h["ETag"] == done["ETag"]
    assert h["ContentType"] == "application/x-parquet"
    assert s3.get_object(Bucket=BUCKET, Key=key, Range="bytes=5242878-5242881")["Body"].read() == b"aabb"
    # Small non-final parts are refused; an aborted upload is gone.
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="conf/mp/small")["UploadId"]
    es = [s3.upload_part(Bucket=BUCKET, Key="conf/mp/small", UploadId=up, PartNumber=n, Body=b"x")["ETag"] for n in (1, 2)]
    mp = {"Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), es)]}
    assert status_of(lambda: s3.complete_multipart_upload(Bucket=BUCKET, Key="conf/mp/small", UploadId=up, MultipartUpload=mp)) == (400, "EntityTooSmall")
    s3.abort_multipart_upload(Bucket=BUCKET, Key="conf/mp/small", UploadId=up)
    assert status_of(lambda: s3.list_parts(Bucket=BUCKET, Key="conf/mp/small", UploadId=up)) == (404, "NoSuchUpload")
    assert status_of(lambda: s3.head_object(Bucket=BUCKET, Key="conf/mp/small"))[0] == 404


def test_conditional_requests(s3):
    key = "conf/cond"
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=b"v1")["ETag"]
    assert status_of(lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"v2", IfNoneMatch="*")) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"v1"
    s3.put_object(Bucket=BUCKET, Key="conf/cond-new", Body=b"n", IfNoneMatch="*")
    assert s3.get_object(Bucket=BUCKET, Key=key, IfMatch=etag)["Body"].read() == b"v1"
    assert status_of(lambda: s3.get_object(Bucket=BUCKET, Key=key, IfMatch='"0000"'))[0] == 412
    assert status_of(lambda: s3.get_object(Bucket=BUCKET, Key=key, IfNoneMatch=etag))[0] == 304
    assert status_of(lambda: s3.head_object(Bucket=BUCKET, Key=key, IfNoneMatch=etag))[0] == 304
    assert status_of(lambda: s3.head_object(Bucket=BUCKET, Key=key, IfMatch='"0000"'))[0] == 412


def test_content_md5_is_checked(s3):
    import base64

    good = base64.b64encode(hashlib.md5(b"body").digest()).decode()
    s3.put_object(Bucket=BUCKET, Key="conf/md5", Body=b"body", ContentMD5=good)
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    assert status_of(lambda: s3.put_object(Bucket=BUCKET, Key="conf/md5", Body=b"body", ContentMD5=bad)) == (400, "BadDigest")


def test_copy_replaces_or_keeps_metadata(s3):
    s3.put_object(Bucket=BUCKET, Key="conf/c/src", Body=b"c", ContentType="text/plain", Metadata={"a": "1"})
    s3.copy_object(Bucket=BUCKET, Key="conf/c/keep", CopySource=f"{BUCKET}/conf/c/src")
    assert s3.head_object(Bucket=BUCKET, Key="conf/c/keep")["Metadata"] == {"a": "1"}
    s3.copy_object(Bucket=BUCKET, Key="conf/c/repl", CopySource=f"{BUCKET}/conf/c/src",
                   MetadataDirective="REPLACE", Metadata={"b": "2"})
    assert s3.head_object(Bucket=BUCKET, Key="conf/c/repl")["Metadata"] == {"b": "2"}
    assert status_of(lambda: s3.copy_object(Bucket=BUCKET, Key="conf/c/x", CopySource=f"{BUCKET}/conf/c/none"))[0] == 404


@pytest.mark.parametrize("signature", ["s3v4", "s3"])
def test_presigned_urls(server, signature):
    s3 = boto3_client(server, signature_version=signature)
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "conf/pre"}, ExpiresIn=60)
    # urllib would add a form content type, which a V2 signature covers.
    req = urllib.request.Request(put_url, data=b"presigned", method="PUT", headers={"Content-Type": ""})
    assert urllib.request.urlopen(req).status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "conf/pre"}, ExpiresIn=60)
    assert urllib.request.urlopen(get_url).read() == b"presigned"
    tampered = get_url.replace("conf/pre", "conf/other")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(tampered)
    assert e.value.code == 403


def signed_chunked_put(server, key, chunks):
    """A PUT with a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (aws-chunked) body, signed chunk by
    chunk as the AWS SDKs send streams (botocore itself only does so over TLS)."""
    import datetime
    import hmac
    import http.client

    def h(b):
        return hashlib.sha256(b).hexdigest()

    def mac(k, m):
        return hmac.new(k, m.encode(), hashlib.sha256).digest()

    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/us-east-1/s3/aws4_request"
    signing_key = mac(mac(mac(mac(("AWS4" + SECRET).encode(), day), "us-east-1"), "s3"), "aws4_request")
    host = f"127.0.0.1:{server.s3_port}"
    decoded = sum(len(c) for c in chunks)
    sizes = [len(c) for c in chunks] + [0]
    total = sum(len(f"{n:x};chunk-signature=") + 64 + 2 + n + 2 for n in sizes)
    headers = {
        "content-encoding": "aws-chunked", "content-length": str(total), "host": host,
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "x-amz-date": amz_date,
        "x-amz-decoded-content-length": str(decoded),
    }
    signed = ";".join(sorted(headers))
    canonical = "\n".join(["PUT", f"/{BUCKET}/{key}", "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "",
                           signed, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"])
    seed = hmac.new(signing_key, f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{h(canonical.encode())}".encode(),
                    hashlib.sha256).hexdigest()
    body, prev = b"", seed
    for chunk in list(chunks) + [b""]:
        to_sign = f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{prev}\n{h(b'')}\n{h(chunk)}"
        prev = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        body += f"{len(chunk):x};chunk-signature={prev}\r\n".encode() + chunk + b"\r\n"
    assert len(body) == total
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={KEY}/{scope}, SignedHeaders={signed}, "
                                f"Signature={seed}")
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.request("PUT", f"/{BUCKET}/{key}", body=body, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


def test_chunked_streaming_upload(server, s3):
    chunks = [b"a" * 65536, b"b" * 65536, b"tail"]
    status, text = signed_chunked_put(server, "conf/chunked", chunks)
    assert status == 200, text
    assert s3.get_object(Bucket=BUCKET, Key="conf/chunked")["Body"].read() == b"".join(chunks)


def test_wrong_keys_and_anonymous_are_refused(server):
    assert status_of(lambda: boto3_client(server, secret="wrong").list_objects_v2(Bucket=BUCKET)) == (403, "SignatureDoesNotMatch")
    assert status_of(lambda: boto3_client(server, key="nobody").list_objects_v2(Bucket=BUCKET)) == (403, "InvalidAccessKeyId")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{endpoint(server)}/{BUCKET}/conf/pre")
    assert e.value.code == 403


def test_unimplemented_operations_answer_501(s3):
    assert status_of(lambda: s3.get_object_tagging(Bucket=BUCKET, Key="conf/keep"))[0] == 501
    assert status_of(lambda: s3.list_multipart_uploads(Bucket=BUCKET))[0] == 501

"""Manifests, indexes, platforms, digests, credentials and endpoints."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pycrid.adapters.config import Config, RegistryConfig
from pycrid.adapters.oci.images import manifest as mf
from pycrid.adapters.oci.images.auth import (
    from_auth_config,
    from_docker_config,
    parse_challenges,
)
from pycrid.adapters.oci.images.digest import (
    DigestError,
    Verifier,
    parse_digest,
    sha256_of,
    verify_bytes,
)
from pycrid.adapters.oci.images.endpoints import endpoints_for, is_loopback, refused_mirrors
from pycrid.adapters.oci.images.manifest import Platform
from pycrid.adapters.oci.images.platform import matches, select
from pycrid.api.cri import api_pb2 as cri

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def manifest_doc(media_type: str = mf.DOCKER_MANIFEST, layer_type: str = mf.DOCKER_LAYER_GZIP):
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": mf.DOCKER_CONFIG, "digest": D1, "size": 10},
        "layers": [{"mediaType": layer_type, "digest": D2, "size": 20}],
    }


def index_doc(*platforms: dict[str, str]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mf.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mf.OCI_MANIFEST,
                    "digest": f"sha256:{i:064x}",
                    "size": 100 + i,
                    "platform": p,
                }
                for i, p in enumerate(platforms)
            ],
        }
    ).encode()


def test_docker_schema2_manifest() -> None:
    parsed = mf.parse(json.dumps(manifest_doc()).encode())
    assert isinstance(parsed, mf.Manifest)
    assert parsed.config.digest == D1
    assert [layer.digest for layer in parsed.layers] == [D2]


def test_oci_manifest_without_media_type_is_recognised_by_shape() -> None:
    doc = manifest_doc(layer_type=mf.OCI_LAYER_ZSTD)
    del doc["mediaType"]
    doc["config"]["mediaType"] = mf.OCI_CONFIG
    parsed = mf.parse(json.dumps(doc).encode(), "application/octet-stream")
    assert isinstance(parsed, mf.Manifest)
    assert parsed.media_type == mf.OCI_MANIFEST


def test_content_type_tells_the_media_type() -> None:
    doc = manifest_doc()
    del doc["mediaType"]
    parsed = mf.parse(json.dumps(doc).encode(), mf.DOCKER_MANIFEST + "; charset=utf-8")
    assert parsed.media_type == mf.DOCKER_MANIFEST


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schemaVersion": 1}, "schema 1"),
        ({"layers": [{"mediaType": "application/x-helm", "digest": D2, "size": 1}]}, "layer"),
        (
            {"config": {"mediaType": "application/vnd.cncf.helm.config", "digest": D1, "size": 1}},
            "not a container image",
        ),
        ({"layers": [{"mediaType": mf.OCI_LAYER, "digest": "md5:abc", "size": 1}]}, "digest"),
        ({"layers": [{"mediaType": mf.OCI_LAYER, "digest": D2, "size": -1}]}, "size"),
    ],
)
def test_bad_manifests_are_refused(change: dict, message: str) -> None:
    doc = {**manifest_doc(), **change}
    with pytest.raises(mf.ManifestError, match=message):
        mf.parse(json.dumps(doc).encode())


def test_not_json_is_refused() -> None:
    with pytest.raises(mf.ManifestError):
        mf.parse(b"<html>")


def test_index_and_platform_selection() -> None:
    index = mf.parse(
        index_doc(
            {"os": "linux", "architecture": "arm", "variant": "v7"},
            {"os": "linux", "architecture": "arm64"},
            {"os": "linux", "architecture": "amd64"},
            {"os": "windows", "architecture": "amd64"},
            {"os": "unknown", "architecture": "unknown"},
        )
    )
    assert isinstance(index, mf.Index)
    assert select(index, Platform("linux", "amd64")).size == 102
    assert select(index, Platform("linux", "arm64", "v8")).size == 101
    assert select(index, Platform("linux", "arm", "v7")).size == 100
    with pytest.raises(mf.ManifestError, match="linux/s390x"):
        select(index, Platform("linux", "s390x"))


def test_exact_variant_is_preferred() -> None:
    index = mf.parse(
        index_doc(
            {"os": "linux", "architecture": "arm"},
            {"os": "linux", "architecture": "arm", "variant": "v7"},
        )
    )
    assert select(index, Platform("linux", "arm", "v7")).size == 101
    assert matches(Platform("linux", "arm64", "v8"), Platform("linux", "arm64", "v8"))
    assert not matches(Platform("linux", "arm", "v6"), Platform("linux", "arm", "v7"))


def test_image_config() -> None:
    config = mf.parse_config(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"User": "www-data:www-data"},
                "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
            }
        ).encode()
    )
    assert config.diff_ids == (D1, D2)
    assert config.user == "www-data:www-data"
    assert str(config.platform) == "linux/amd64"
    with pytest.raises(mf.ManifestError):
        mf.parse_config(b'{"rootfs": {"diff_ids": ["nope"]}}')


def test_digest_verification() -> None:
    data = b"some content"
    digest = sha256_of(data)
    verify_bytes(data, digest)
    with pytest.raises(DigestError):
        verify_bytes(data + b"!", digest)
    with pytest.raises(DigestError, match="more than the 3 bytes"):
        verify_bytes(data, digest, 3)
    with pytest.raises(DigestError, match="expected 99"):
        verify_bytes(data, digest, 99)
    verifier = Verifier(digest, len(data))
    verifier.update(data)
    with pytest.raises(DigestError, match="more than"):
        verifier.update(b"x")
    with pytest.raises(ValueError):
        parse_digest("sha256:abc")
    with pytest.raises(ValueError):
        parse_digest("sha256:" + "G" * 64)


def test_www_authenticate_parsing() -> None:
    challenges = parse_challenges(
        'Bearer realm="https://auth.example.test/token",service="registry.example.test",'
        'scope="repository:a/b:pull,push", Basic realm="registry"'
    )
    assert [c.scheme for c in challenges] == ["bearer", "basic"]
    assert challenges[0].params == {
        "realm": "https://auth.example.test/token",
        "service": "registry.example.test",
        "scope": "repository:a/b:pull,push",
    }
    assert challenges[1].params == {"realm": "registry"}
    assert parse_challenges("Basic") == [parse_challenges("basic")[0]]


def test_credentials_from_the_cri_auth_config() -> None:
    auth = cri.AuthConfig(username="u", password="p", server_address="https://reg.test/v1/")
    assert from_auth_config(auth, "reg.test").username == "u"
    assert not from_auth_config(auth, "mirror.test")
    encoded = cri.AuthConfig(auth=base64.b64encode(b"me:secret:with:colons").decode())
    creds = from_auth_config(encoded, "anything.test")
    assert (creds.username, creds.password) == ("me", "secret:with:colons")
    assert not from_auth_config(cri.AuthConfig(), "reg.test")


def test_credentials_from_docker_config(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
                    "reg.test:5000": {"username": "u", "password": "p"},
                }
            }
        )
    )
    assert from_docker_config("docker.io", [config]).username == "hub"
    assert from_docker_config("reg.test:5000", [config]).password == "p"
    assert not from_docker_config("other.test", [config])
    assert not from_docker_config("reg.test:5000", [tmp_path / "missing.json"])


def test_endpoints_mirrors_first_then_https() -> None:
    config = Config(
        registries={
            "registry.k8s.io": RegistryConfig(
                mirrors=["http://127.0.0.1:5000", "https://mirror.test/k8s/", "http://plain.test"]
            )
        }
    )
    endpoints = endpoints_for(config, "registry.k8s.io")
    assert [str(e) for e in endpoints] == [
        "http://127.0.0.1:5000",
        "https://mirror.test/k8s",
        "https://registry.k8s.io",
    ]
    assert endpoints[0].mirror and not endpoints[-1].mirror
    assert refused_mirrors(config, "registry.k8s.io") == ["http://plain.test"]
    config.registries["registry.k8s.io"].upstream = False
    assert [str(e) for e in endpoints_for(config, "registry.k8s.io")][
        -1
    ] == "https://mirror.test/k8s"


def test_plain_http_only_for_loopback_and_insecure() -> None:
    config = Config(registries={"insecure.test": RegistryConfig(insecure=True)})
    assert [str(e) for e in endpoints_for(config, "insecure.test")] == [
        "https://insecure.test",
        "http://insecure.test",
    ]
    assert not endpoints_for(config, "insecure.test")[0].verify_tls
    assert [str(e) for e in endpoints_for(config, "localhost:5000")][-1] == "http://localhost:5000"
    assert [str(e) for e in endpoints_for(config, "secure.test")] == ["https://secure.test"]
    assert [str(e) for e in endpoints_for(config, "docker.io")] == ["https://registry-1.docker.io"]
    assert is_loopback("127.0.0.1:5000") and is_loopback("[::1]:5000")
    assert not is_loopback("10.0.0.1:5000")


def test_endpoint_url_policy() -> None:
    secure = endpoints_for(Config(), "secure.test")[0]
    assert secure.allows("https://storage.test/blob")
    assert not secure.allows("http://storage.test/blob")
    assert secure.allows("http://127.0.0.1:8080/token")
    assert secure.verifies_tls_for("https://secure.test/v2/")
    insecure = endpoints_for(
        Config(registries={"in.test": RegistryConfig(insecure=True)}), "in.test"
    )
    https, http = insecure
    assert not https.verifies_tls_for("https://in.test/v2/")
    assert https.verifies_tls_for("https://storage.test/blob")  # other hosts are checked
    assert http.allows("http://in.test/redirected")
    assert not http.allows("http://elsewhere.test/blob")

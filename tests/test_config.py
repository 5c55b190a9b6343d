from __future__ import annotations

from pathlib import Path

import pytest

from pycrid.adapters.config import Config, ConfigError, load_config, parse_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_follow_the_design():
    config = Config()
    assert config.listen == "unix:///run/pycrid/pycrid.sock"
    assert config.adapter == "docker"
    assert config.state_dir == "/var/lib/pycrid"
    assert config.pause_image == "registry.k8s.io/pause:3.10"
    assert config.streaming.address == "127.0.0.1"
    assert config.network.cni_bin_dirs == ["/usr/lib/cni", "/opt/cni/bin"]
    assert config.socket_path == Path("/run/pycrid/pycrid.sock")


def test_file_values_and_flag_overrides(tmp_path):
    path = write(
        tmp_path,
        """
adapter = "oci"
log_level = "debug"
[docker]
endpoint = "unix:///tmp/d.sock"
startup_timeout = 3
[registries."registry.k8s.io"]
mirrors = ["http://127.0.0.1:5000"]
[registries."127.0.0.1:5000"]
insecure = true
""",
    )
    config = load_config(path, {"adapter": "docker", "streaming.port": 10010, "listen": None})
    assert config.adapter == "docker"  # the flag wins
    assert config.log_level == "debug"
    assert config.docker.endpoint == "unix:///tmp/d.sock"
    assert config.docker.startup_timeout == 3.0
    assert config.streaming.port == 10010
    assert config.registry("registry.k8s.io").mirrors == ["http://127.0.0.1:5000"]
    assert config.registry("127.0.0.1:5000").insecure
    assert config.registry("quay.io").mirrors == []


def test_missing_default_file_means_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr("pycrid.adapters.config.DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    assert load_config() == Config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("adapter = ", "not valid TOML"),
        ('adapter = "podman"', "unknown adapter 'podman'"),
        ('colour = "blue"', "unknown key 'colour'"),
        ("[docker]\nendpoint = 5", "docker.endpoint must be a str"),
        ('log_level = "loud"', "unknown log level"),
        ('listen = "tcp://0.0.0.0:1"', "listen must be a unix:// socket"),
        ('[network]\nmode = "magic"', "unknown network mode"),
        ("[streaming]\nport = 70000", "out of range"),
        ('[streaming]\ntls_cert = "/c.pem"', "must be set together"),
        ('[registries."x.io"]\nmirrors = ["127.0.0.1:5000"]', "must start with http"),
        ("docker = 3", "[docker] must be a table"),
        ("[streaming]\nport = true", "must be a int"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(write(tmp_path, text))
    assert message in str(caught.value)


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_round_trip_through_dict():
    config = parse_config({"registries": {"gcr.io": {"mirrors": ["https://m.example"]}}})
    assert parse_config(config.to_dict()) == config


def test_a_state_dir_of_its_own_gets_a_run_dir_of_its_own():
    default = parse_config({})
    assert (default.state_dir, default.run_dir) == ("/var/lib/pycrid", "/run/pycrid")
    one = parse_config({"state_dir": "/srv/one"})
    two = parse_config({"state_dir": "/srv/two"})
    assert one.run_dir.startswith("/run/pycrid-") and one.run_dir != two.run_dir
    assert parse_config({"state_dir": "/srv/one"}).run_dir == one.run_dir
    explicit = parse_config({"state_dir": "/srv/one", "run_dir": "/run/mine"})
    assert explicit.run_dir == "/run/mine"

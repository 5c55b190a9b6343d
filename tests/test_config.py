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
        ("shutdown_grace = -5", "shutdown_grace -5 is out of range"),
        ("[docker]\nstartup_timeout = -1", "docker.startup_timeout -1 is out of range"),
        ("[docker]\nstartup_timeout = 0", "docker.startup_timeout 0 is out of range"),
        ('[docker]\nendpoint = "docker.sock"', "must be unix:///path or tcp://host:port"),
        ('[streaming]\naddress = "999.1.1.1"', "streaming.address '999.1.1.1' is not an IP"),
        ('[streaming]\naddress = "localhost"', "is not an IP address"),
        ("[oci]\npull_progress_timeout = 0", "oci.pull_progress_timeout 0 is out of range"),
        ("[oci]\nmax_concurrent_downloads = 0", "out of range (1 to 64)"),
        ("[limits]\nmax_env_vars = 0", "limits.max_env_vars 0 is out of range"),
        ("[limits]\nmax_request_bytes = 1024", "limits.max_request_bytes 1024 is out of range"),
        ("[limits]\nmax_port_mappings = 70000", "limits.max_port_mappings 70000 is out of"),
        ("[limits]\nmax_mounts = -1", "limits.max_mounts -1 is out of range"),
        ("[limits]\nmax_devices = 1.5", "limits.max_devices must be a int"),
        ("[limits]\nmax_env = 5", "unknown key limits.'max_env'"),
        ('state_dir = "var/lib/pycrid"', "state_dir must be an absolute path"),
        ('run_dir = "run"', "run_dir must be an absolute path"),
        ('[network]\ncni_bin_dirs = ["bin"]', "network.cni_bin_dirs must be an absolute"),
        ('listen = "unix://pycrid.sock"', "must name an absolute socket path"),
        ('[registries."x.io"]\nmirrors = ["http://"]', "has no host"),
        ('[registries."x.io"]\nmirrors = ["http://m:99999"]', "is not a URL"),
        ('socket_group = "no-such-group-here"', "does not exist on this host"),
        ('[docker]\nadopt = ["containerd"]', "unknown docker.adopt runtime 'containerd'"),
        ('[docker]\nadopt = "cri-dockerd"', "docker.adopt must be a list"),
        ('[docker]\ncri_dockerd_root = "cri"', "docker.cri_dockerd_root must be an absolute"),
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


def test_log_levels_are_case_insensitive():
    assert parse_config({"log_level": "DEBUG"}).log_level == "debug"
    assert parse_config({"log_level": "Warning"}).log_level == "warning"


def test_systemd_socket_and_socket_group():
    config = parse_config({"listen": "fd://", "socket_group": "0"})
    assert config.socket_activated
    assert parse_config({"listen": "fd://pycrid.socket"}).socket_activated
    assert not parse_config({}).socket_activated
    with pytest.raises(ConfigError, match="socket name"):
        parse_config({"listen": "fd://a/b"})


def test_the_metrics_address_is_off_by_default_and_a_flag_sets_it(tmp_path):
    assert Config().metrics.address == ""
    path = tmp_path / "c.toml"
    path.write_text('[metrics]\naddress = "127.0.0.1:9100"\n')
    assert load_config(path).metrics.address == "127.0.0.1:9100"
    overridden = load_config(path, {"metrics.address": "[::1]:0"})
    assert overridden.metrics.address == "[::1]:0"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("9100", "host:port"),
        ("localhost:9100", "not an IP address"),
        ("127.0.0.1:99999", "out of range"),
        ("127.0.0.1:", "host:port"),
    ],
)
def test_a_bad_metrics_address_is_refused(address, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"metrics": {"address": address}})


def test_log_format_and_log_file_are_checked():
    config = parse_config({"log_format": "json", "log_file": "/var/log/pycrid.log"})
    assert (config.log_format, config.log_file) == ("json", "/var/log/pycrid.log")
    with pytest.raises(ConfigError, match="unknown log format 'xml'"):
        parse_config({"log_format": "xml"})
    with pytest.raises(ConfigError, match="log_file must be an absolute path"):
        parse_config({"log_file": "pycrid.log"})


def test_limits_have_defaults_and_can_be_set(tmp_path):
    assert load_config(write(tmp_path, "")).limits.max_env_vars == 65536
    text = "[limits]\nmax_env_vars = 10\nmax_env_bytes = 2048\nmax_port_mappings = 0"
    limits = load_config(write(tmp_path, text)).limits
    assert (limits.max_env_vars, limits.max_env_bytes, limits.max_port_mappings) == (10, 2048, 0)
    assert limits.max_mounts == 1024

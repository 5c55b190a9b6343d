"""The static pods of the kubelet suite, one builder per scenario.

Each returns a v1 Pod as a dict; the node writes it as JSON (which kubelet reads
as YAML) into its manifest directory. Images are the test registry's, under
their upstream names.
"""

from __future__ import annotations

from typing import Any

from crictl_tests.harness import BUSYBOX_IMAGE, WEBSERVER_IMAGE

WEB_PORT = 80


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"suite": "kubelet"}},
        "spec": {"containers": list(containers), **spec},
    }


def shell(name: str, script: str, image: str = BUSYBOX_IMAGE, **fields: Any) -> dict[str, Any]:
    """A container that runs ``script`` under ``sh -c``."""
    return {"name": name, "image": image, "command": ["sh", "-c", script], **fields}


def sleeper(name: str, **fields: Any) -> dict[str, Any]:
    return shell(name, "trap 'exit 0' TERM; while true; do sleep 1; done", **fields)


def exec_probe(*command: str, period: int = 1, **fields: Any) -> dict[str, Any]:
    return {"exec": {"command": list(command)}, "periodSeconds": period, **fields}


def init_and_probes() -> dict[str, Any]:
    """Two init containers in order, then a web server with httpGet and tcpSocket
    probes and a sidecar with an exec probe on what the init containers wrote."""
    work = [{"name": "work", "mountPath": "/shared"}]
    return pod(
        "init-probes",
        {
            "name": "web",
            "image": WEBSERVER_IMAGE,
            "ports": [{"containerPort": WEB_PORT}],
            "readinessProbe": {"httpGet": {"path": "/", "port": WEB_PORT}, "periodSeconds": 1},
            "livenessProbe": {"tcpSocket": {"port": WEB_PORT}, "periodSeconds": 2},
        },
        sleeper(
            "sidecar",
            volumeMounts=work,
            readinessProbe=exec_probe("grep", "-q", "second", "/shared/order"),
        ),
        initContainers=[
            shell("first", "sleep 1; echo first >> /shared/order", volumeMounts=work),
            shell("second", "echo second >> /shared/order", volumeMounts=work),
        ],
        volumes=[{"name": "work", "emptyDir": {}}],
    )


def liveness() -> dict[str, Any]:
    """Healthy for a few seconds, then its exec liveness probe fails."""
    script = (
        "echo boot $(cat /proc/sys/kernel/random/uuid); touch /tmp/healthy; "
        "sleep 6; rm /tmp/healthy; echo unhealthy now; "
        "trap 'echo stopping; exit 0' TERM; while true; do sleep 1; done"
    )
    probe = exec_probe("cat", "/tmp/healthy", failureThreshold=1, initialDelaySeconds=1)
    return pod(
        "liveness",
        shell("app", script, livenessProbe=probe),
        terminationGracePeriodSeconds=2,
    )


def crash() -> dict[str, Any]:
    """One container that exits 3 with a termination message, one that exits 4 with
    only its log to tell why (FallbackToLogsOnError)."""
    return pod(
        "crash",
        shell("message", "echo 'gave up: code 3' > /dev/termination-log; exit 3"),
        shell(
            "fallback",
            "echo some output; echo 'last words before 4'; exit 4",
            terminationMessagePolicy="FallbackToLogsOnError",
        ),
    )


def logger(lines: int, per_second: int) -> dict[str, Any]:
    """Writes ``lines`` numbered lines at about ``per_second``, then idles."""
    pad = "x" * 40
    script = (
        f'i=0; while [ $i -lt {lines} ]; do i=$((i+1)); echo "line $i {pad}"; '
        f"[ $((i % {per_second // 10})) -eq 0 ] && usleep 100000; done; "
        "echo done; trap 'exit 0' TERM; while true; do sleep 1; done"
    )
    return pod("logger", shell("writer", script), terminationGracePeriodSeconds=2)


def streams() -> dict[str, Any]:
    """A shell to exec into, and a container that answers on its stdin to attach to."""
    answer = 'while read line; do echo "got $line"; done'
    return pod(
        "streams",
        sleeper("shell"),
        shell("answer", answer, stdin=True),
        terminationGracePeriodSeconds=2,
    )


def qos(name: str, resources: dict[str, Any]) -> dict[str, Any]:
    return pod(name, sleeper("app", resources=resources), terminationGracePeriodSeconds=2)


BEST_EFFORT: dict[str, Any] = {}
BURSTABLE = {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}
GUARANTEED = {
    "requests": {"cpu": "200m", "memory": "48Mi"},
    "limits": {"cpu": "200m", "memory": "48Mi"},
}


def oom(limit: str) -> dict[str, Any]:
    """Fills memory beyond ``limit``: tail keeps a line from /dev/zero, which never ends."""
    return pod(
        "oom",
        shell("hog", "tail /dev/zero", resources={"limits": {"memory": limit}}),
        restartPolicy="Never",
    )


def volumes(host_path: str) -> dict[str, Any]:
    """emptyDir, hostPath, downward API (volume and env), kubelet's /etc/hosts and a DNS config."""
    return pod(
        "volumes",
        sleeper(
            "app",
            env=[
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "PLAIN", "value": "plain value"},
            ],
            volumeMounts=[
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "host", "mountPath": "/host"},
                {"name": "podinfo", "mountPath": "/podinfo"},
            ],
        ),
        shell(
            "writer",
            "echo from-writer > /scratch/shared; trap 'exit 0' TERM; while true; do sleep 1; done",
            volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
        ),
        volumes=[
            {"name": "scratch", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": host_path, "type": "Directory"}},
            {
                "name": "podinfo",
                "downwardAPI": {
                    "items": [
                        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    ]
                },
            },
        ],
        dnsPolicy="None",
        dnsConfig={
            "nameservers": ["192.0.2.53"],
            "searches": ["pycrid.test", "example.test"],
            "options": [{"name": "ndots", "value": "3"}],
        },
        hostAliases=[{"ip": "192.0.2.10", "hostnames": ["alias.pycrid.test"]}],
        terminationGracePeriodSeconds=2,
    )


def host_network() -> dict[str, Any]:
    return pod(
        "hostnet",
        sleeper("app"),
        hostNetwork=True,
        terminationGracePeriodSeconds=2,
    )


def host_port(port: int) -> dict[str, Any]:
    return pod(
        "hostport",
        {
            "name": "web",
            "image": WEBSERVER_IMAGE,
            "ports": [{"containerPort": WEB_PORT, "hostPort": port, "protocol": "TCP"}],
        },
        terminationGracePeriodSeconds=2,
    )


def graceful(host_path: str, grace: int) -> dict[str, Any]:
    """Records its preStop hook and its TERM in a hostPath file, then takes a second to exit."""
    script = (
        "trap 'echo term >> /host/graceful; sleep 1; exit 0' TERM; "
        "echo started >> /host/graceful; while true; do sleep 1; done"
    )
    return pod(
        "graceful",
        shell(
            "app",
            script,
            volumeMounts=[{"name": "host", "mountPath": "/host"}],
            lifecycle={
                "preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /host/graceful"]}}
            },
        ),
        volumes=[{"name": "host", "hostPath": {"path": host_path, "type": "Directory"}}],
        terminationGracePeriodSeconds=grace,
    )


def edited(version: str) -> dict[str, Any]:
    return pod(
        "edited",
        sleeper("app", env=[{"name": "VERSION", "value": version}]),
        terminationGracePeriodSeconds=2,
    )

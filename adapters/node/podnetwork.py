"""A pod's network: CNI ADD and DEL on a pinned namespace, saved.

Both adapters give a pod its network the same way. The namespace is pinned
to a file under the run directory first (from the pause process for the
docker adapter, made by pycrid for the oci one), then the network list and
port mappings are saved, then ADD runs and its result is
saved too. DEL later uses exactly what ADD used, from what was
saved, so it works after a restart and after the pause process died,
and it runs once: the state says when the network is torn down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrid.adapters import faults
from pycrid.adapters.node import cni, netns
from pycrid.adapters.revision import Tracked
from pycrid.api.cri import api_pb2 as cri

PROTOCOLS = {cri.TCP: "tcp", cri.UDP: "udp", cri.SCTP: "sctp"}


@dataclass
class NetworkState(Tracked):
    """A pod's network as set up by RunPodSandbox; saved with the pod."""

    mode: str  # "cni", "docker" or "host"
    ready: bool = False
    ips: list[str] = field(default_factory=list)
    netns: str = ""
    network: dict[str, Any] | None = None
    """The CNI network list ADD used (DEL must use the same)."""
    result: dict[str, Any] | None = None
    port_mappings: list[dict[str, Any]] = field(default_factory=list)
    torn_down: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "ready": self.ready,
            "ips": self.ips,
            "netns": self.netns,
            "network": self.network,
            "result": self.result,
            "port_mappings": self.port_mappings,
            "torn_down": self.torn_down,
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> NetworkState:
        return cls(
            mode=value.get("mode", "docker"),
            ready=bool(value.get("ready")),
            ips=list(value.get("ips") or []),
            netns=value.get("netns") or "",
            network=value.get("network"),
            result=value.get("result"),
            port_mappings=list(value.get("port_mappings") or []),
            torn_down=bool(value.get("torn_down")),
        )


def cni_port_mappings(mappings: list[cri.PortMapping]) -> list[dict[str, Any]]:
    """The ``portMappings`` capability argument of the CNI portmap plugin."""
    return [
        {
            "hostPort": m.host_port,
            "containerPort": m.container_port,
            "protocol": PROTOCOLS.get(m.protocol, "tcp"),
            **({"hostIP": m.host_ip} if m.host_ip else {}),
        }
        for m in mappings
        if m.host_port > 0
    ]


def attachment(
    sandbox_id: str, metadata: cri.PodSandboxMetadata, netns_path: str
) -> cni.Attachment:
    """What CNI_CONTAINERID, CNI_NETNS and CNI_ARGS say for a pod."""
    return cni.Attachment(
        container_id=sandbox_id,
        netns=netns_path,
        args={
            "K8S_POD_NAMESPACE": metadata.namespace,
            "K8S_POD_NAME": metadata.name,
            "K8S_POD_INFRA_CONTAINER_ID": sandbox_id,
            "K8S_POD_UID": metadata.uid,
        },
    )


SaveState = Callable[[NetworkState], Awaitable[None]]


class PodNetworks:
    """CNI bring-up and tear-down of pods whose namespaces are pinned under ``netns_dir``."""

    def __init__(self, runner: cni.CniRunner, netns_dir: Path) -> None:
        self.runner = runner
        self.netns_dir = netns_dir

    def netns_path(self, sandbox_id: str) -> Path:
        return self.netns_dir / sandbox_id

    async def set_up(
        self,
        sandbox_id: str,
        config: cri.PodSandboxConfig,
        network_list: cni.NetworkList,
        state: NetworkState,
        save: SaveState,
    ) -> None:
        """ADD on the pod's pinned namespace; ``state`` is saved before ADD and after it."""
        path = self.netns_path(sandbox_id)
        state.netns = str(path)
        state.network = network_list.to_dict()
        state.port_mappings = cni_port_mappings(list(config.port_mappings))
        await save(state)
        result = await self.runner.add(
            network_list,
            attachment(sandbox_id, config.metadata, state.netns),
            {"portMappings": state.port_mappings},
        )
        faults.reach("network.after-cni-add")
        state.result = result
        state.ips = cni.result_ips(result)

    async def tear_down(
        self, sandbox_id: str, metadata: cri.PodSandboxMetadata, state: NetworkState
    ) -> None:
        """DEL (once) with what ADD used, then release the pin; marks ``state`` torn down.

        A namespace that is no longer pinned is passed to DEL as "", which the
        plugins take as "release the IP, the interfaces are gone already".
        """
        if state.torn_down:
            return
        if state.mode == "cni" and state.network:
            path = self.netns_path(sandbox_id)
            await self.runner.delete(
                cni.NetworkList.from_dict(state.network),
                attachment(sandbox_id, metadata, str(path) if netns.is_pinned(path) else ""),
                {"portMappings": state.port_mappings},
                state.result,
            )
            faults.reach("network.after-cni-del")
        await asyncio.to_thread(netns.unpin, self.netns_path(sandbox_id))
        state.ready = False
        state.torn_down = True

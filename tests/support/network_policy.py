"""Kubernetes NetworkPolicy semantics as plain data, to ask of deploy/'s policies "may this
pod open a connection to that one on this port?" without a cluster.

The rules (https://kubernetes.io/docs/concepts/services-networking/network-policies/): a
connection is allowed when the source may send it (no policy of its namespace selects it
for Egress, or one that does has an egress rule that admits the destination and port) and
the destination may take it (the same for Ingress). Policies only add: there is no deny
rule. A peer's podSelector alone means "pods of the policy's namespace"; with a
namespaceSelector, pods of the namespaces it selects; an ipBlock matches addresses. Pods
here get addresses from 10.0.0.0/8, as on most clusters.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace and labels) or, with `namespace` None, an address outside the cluster."""

    namespace: str | None
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    address: str = "10.1.2.3"
    named_ports: dict[str, int] = field(default_factory=dict, hash=False)


def outside(address: str) -> Endpoint:
    return Endpoint(namespace=None, address=address)


def label_selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector; an empty one (or a key with no value, as YAML gives it) matches all."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {operator}")
    return True


def namespace_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}  # set by the API server on every namespace


def peer_matches(peer: dict[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(other.address)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if other.namespace is None:
        return False
    if peer.get("namespaceSelector") is not None or "namespaceSelector" in peer:
        if not label_selector_matches(peer["namespaceSelector"], namespace_labels(other.namespace)):
            return False
    elif other.namespace != policy_namespace:
        return False
    return label_selector_matches(peer.get("podSelector", {}), other.labels)


def port_matches(ports: list[dict[str, Any]] | None, port: int, target: Endpoint) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            wanted = target.named_ports.get(wanted)
        if wanted == port or (wanted is not None and wanted <= port <= entry.get("endPort", wanted)):
            return True
    return False


def side_allows(
    policies: list[dict], pod: Endpoint, direction: str, other: Endpoint, port: int, target
) -> bool:
    """Whether the policies of `pod`'s namespace let it send (Egress) or take (Ingress)."""
    if pod.namespace is None:
        return True  # outside the cluster: no policy of ours applies
    selecting = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == pod.namespace
        and label_selector_matches(policy["spec"].get("podSelector"), pod.labels)
        and direction in policy_types(policy["spec"])
    ]
    if not selecting:
        return True
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if peers and not any(peer_matches(peer, pod.namespace, other) for peer in peers):
                continue
            if port_matches(rule.get("ports"), port, target):
                return True
    return False


def policy_types(spec: dict[str, Any]) -> list[str]:
    """As the API server defaults them: Ingress always, Egress when there are egress rules."""
    if "policyTypes" in spec:
        return spec["policyTypes"]
    return ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def allowed(policies: list[dict], source: Endpoint, destination: Endpoint, port: int) -> bool:
    """May `source` open a TCP connection to `destination` on `port`?"""
    return side_allows(policies, source, "Egress", destination, port, destination) and side_allows(
        policies, destination, "Ingress", source, port, destination
    )

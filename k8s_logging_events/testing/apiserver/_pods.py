"""What the local API server knows of Pods: decoding, defaults, validation, selectable fields.

Part of the local API server on the test side of the pipeline, used by the pod store
(``_store_pods``) and the Pods handlers (``_rest_pods``). Pods are served so that ``kubectl
describe pod`` and ``kubectl events --for pod/NAME`` work and events are about pods that
exist; the rules are a small, honest subset of the real server's:

* the body's ``metadata`` is decoded field by field (``ObjectMeta``); ``spec`` and
  ``status`` are kept as sent once the parts used here have the right shape;
* the defaults ``kubectl describe`` shows are applied as the API server's defaulting and
  its default admission plugins apply them (``SetDefaults_PodSpec``,
  ``SetDefaults_Container``, ServiceAccount, DefaultTolerationSeconds, Priority);
* a create's ``status`` is replaced by ``Pending`` and the pod's QoS class, as the pod
  strategy's ``PrepareForCreate`` does; :func:`running_status` is what a kubelet would
  report for a pod whose containers all started;
* validation: the name is a DNS subdomain, ``spec.containers`` is required, each container
  needs a DNS-label name (unique) and an image, ``restartPolicy`` and ``dnsPolicy`` must be
  known values (``ValidatePodCreate``, in part);
* the selectable fields are the pod strategy's (``ToSelectableFields``).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from k8s_logging_events.models import format_time
from k8s_logging_events.testing.apiserver._errors import FieldError
from k8s_logging_events.testing.apiserver._schema import POD, DecodeError, decode
from k8s_logging_events.testing.apiserver._validation import (
    is_dns1123_label,
    validate_pod_meta,
)

POD_FIELD_LABELS = frozenset(
    {
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    }
)
"""The field labels core/v1 accepts for Pods."""

LOCAL_NODE = "local-node"
"""The node pods made with ``LocalApiServer.add_pod`` run on (there is no scheduler)."""
_NODE_IP = "10.0.0.2"

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_QOS_RESOURCES = ("cpu", "memory")
_DEFAULT_TOLERATION_SECONDS = 300
_SUFFIXES: dict[str, Decimal | int] = {
    "": 1,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


# -- decoding ---------------------------------------------------------------------------


def _shape_error(value: Any, owner: str, path: str, go_type: str) -> DecodeError:
    kind = (
        "null"
        if value is None
        else "string"
        if isinstance(value, str)
        else "array"
        if isinstance(value, list)
        else "object"
        if isinstance(value, dict)
        else "bool"
        if isinstance(value, bool)
        else "number"
    )
    return DecodeError(
        f"json: cannot unmarshal {kind} into Go struct field {owner}.{path} of type {go_type}"
    )


def decode_pod(body: dict[str, Any], unknown: list[str]) -> dict[str, Any]:
    """Decode a Pod body (without kind and apiVersion) into ``{metadata, spec, status}``.

    Raises:
        DecodeError: a part has the wrong type (Go's ``cannot unmarshal`` message).
    """
    pod = decode(POD, body, unknown)
    spec = pod.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise _shape_error(spec, "Pod", "spec", "v1.PodSpec")
    containers = spec.get("containers")
    if containers is not None:
        if not isinstance(containers, list):
            raise _shape_error(containers, "PodSpec", "spec.containers", "[]v1.Container")
        for container in containers:
            if not isinstance(container, dict):
                raise _shape_error(container, "PodSpec", "spec.containers", "v1.Container")
            for key in ("name", "image"):
                value = container.get(key)
                if value is not None and not isinstance(value, str):
                    raise _shape_error(value, "Container", f"spec.containers.{key}", "string")
    status = pod.get("status")
    if status is not None and not isinstance(status, dict):
        raise _shape_error(status, "Pod", "status", "v1.PodStatus")
    return {"metadata": pod["metadata"], "spec": spec, "status": status or {}}


# -- defaults -----------------------------------------------------------------------------


def _default_container(container: dict[str, Any]) -> dict[str, Any]:
    container = dict(container)
    resources = copy.deepcopy(container.get("resources") or {})
    limits = resources.get("limits") or {}
    if limits:
        requests = resources.setdefault("requests", {})
        for name, quantity in limits.items():
            requests.setdefault(name, quantity)
    container["resources"] = resources
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1].partition("@")[0].partition(":")[2]
    latest = "@" not in image and tag in ("", "latest")
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    return container


def _tolerates(toleration: Any, taint: str) -> bool:
    """Whether a toleration already covers ``taint``'s NoExecute (DefaultTolerationSeconds)."""
    return (
        isinstance(toleration, dict)
        and toleration.get("key") == taint
        and toleration.get("effect") in ("", "NoExecute", None)
    )


def default_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """Apply the defaults of the API server and its default admission plugins."""
    spec = dict(pod["spec"])
    for key in ("initContainers", "containers"):
        if isinstance(spec.get(key), list):
            spec[key] = [_default_container(container) for container in spec[key]]
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = account
    spec["serviceAccount"] = account
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    tolerations = list(spec.get("tolerations") or [])
    for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(_tolerates(toleration, taint) for toleration in tolerations):
            tolerations.append(
                {
                    "key": taint,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": _DEFAULT_TOLERATION_SECONDS,
                }
            )
    spec["tolerations"] = tolerations
    spec.setdefault("priority", 0)
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    return {**pod, "spec": spec}


def _quantity(value: Any) -> Decimal | None:
    text = str(value).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number, factor = text[: -len(suffix)], _SUFFIXES[suffix]
            break
    else:
        number, factor = text, 1
    try:
        return Decimal(number) * Decimal(factor)
    except InvalidOperation:
        return None


def qos_class(spec: Mapping[str, Any]) -> str:
    """``qos.GetPodQOS``: BestEffort, Guaranteed or Burstable, from cpu and memory."""
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    for container in containers:
        resources = container.get("resources") or {}
        for name, raw in (resources.get("requests") or {}).items():
            amount = _quantity(raw)
            if name in _QOS_RESOURCES and amount:
                requests[name] = requests.get(name, Decimal(0)) + amount
        found: set[str] = set()
        for name, raw in (resources.get("limits") or {}).items():
            if name in _QOS_RESOURCES:
                found.add(name)
                amount = _quantity(raw)
                if amount:
                    limits[name] = limits.get(name, Decimal(0)) + amount
        if not found.issuperset(_QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"


def running_status(pod: Mapping[str, Any], now: datetime, index: int) -> dict[str, Any]:
    """The status a kubelet reports for a pod whose containers all started and are ready.

    ``index`` numbers the pod on its (simulated) node: it picks the pod's IP.
    """
    started = format_time(now)
    uid = str(pod["metadata"].get("uid", ""))
    statuses = []
    for container in pod["spec"].get("containers") or []:
        digest = hashlib.sha256(f"{uid}/{container.get('name')}".encode()).hexdigest()
        statuses.append(
            {
                "name": container.get("name", ""),
                "state": {"running": {"startedAt": started}},
                "lastState": {},
                "ready": True,
                "restartCount": 0,
                "image": container.get("image", ""),
                "imageID": "",
                "containerID": f"containerd://{digest}",
                "started": True,
            }
        )
    conditions = [
        {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": started}
        for kind in (
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        )
    ]
    ip = f"10.244.{index // 250 % 250}.{index % 250 + 2}"
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": _NODE_IP,
        "hostIPs": [{"ip": _NODE_IP}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started,
        "containerStatuses": statuses,
        "qosClass": qos_class(pod["spec"]),
    }


# -- validation and selection ---------------------------------------------------------------


def validate_pod(pod: Mapping[str, Any]) -> list[FieldError]:
    """The checks of a pod create that the local server makes (``ValidatePodCreate``, part)."""
    errors = validate_pod_meta(pod["metadata"])
    spec = pod["spec"]
    containers = spec.get("containers") or []
    if not containers:
        errors.append(FieldError.required("spec.containers"))
    seen: set[str] = set()
    for index, container in enumerate(containers):
        path = f"spec.containers[{index}]"
        name = container.get("name") or ""
        if not name:
            errors.append(FieldError.required(f"{path}.name"))
        else:
            errors.extend(
                FieldError.invalid(f"{path}.name", name, message)
                for message in is_dns1123_label(name)
            )
            if name in seen:
                errors.append(FieldError("FieldValueDuplicate", f"{path}.name", name))
            seen.add(name)
        if not container.get("image"):
            errors.append(FieldError.required(f"{path}.image"))
    for key, allowed in (("restartPolicy", _RESTART_POLICIES), ("dnsPolicy", _DNS_POLICIES)):
        value = spec.get(key)
        if value not in allowed:
            supported = ", ".join(f'"{option}"' for option in allowed)
            errors.append(
                FieldError(
                    "FieldValueNotSupported",
                    f"spec.{key}",
                    value,
                    f"supported values: {supported}",
                )
            )
    return errors


def pod_fields(pod: Mapping[str, Any]) -> dict[str, str]:
    """The values of the selectable fields of a stored pod."""
    meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
    ips = status.get("podIPs") or []
    return {
        "metadata.name": str(meta.get("name", "")),
        "metadata.namespace": str(meta.get("namespace", "")),
        "spec.nodeName": str(spec.get("nodeName", "")),
        "spec.restartPolicy": str(spec.get("restartPolicy", "")),
        "spec.schedulerName": str(spec.get("schedulerName", "")),
        "spec.serviceAccountName": str(spec.get("serviceAccountName", "")),
        "spec.hostNetwork": "true" if spec.get("hostNetwork") else "false",
        "status.phase": str(status.get("phase", "")),
        "status.podIP": str(ips[0].get("ip", "")) if ips else "",
        "status.nominatedNodeName": str(status.get("nominatedNodeName", "")),
    }

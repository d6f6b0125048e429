"""Kind and apiVersion of the ``kubernetes`` client's resource models, by class name.

Items of list calls carry no ``kind``/``apiVersion``: the reference builder takes them from
here, so the application thread never imports the client's API modules (kubernetes 37; each
entry is checked in ``tests/test_references.py``; other classes fall back to a slow search)."""

from __future__ import annotations

# the built-in kinds of each apiVersion whose objects live in a namespace (the client reads
# them with a read_namespaced_* method): an event about one of them without a namespace
# would be filed where kubectl describe never looks
_NAMESPACED = {
    "v1": "ConfigMap Endpoints Event LimitRange PersistentVolumeClaim Pod PodTemplate "
    "ReplicationController ResourceQuota Secret Service ServiceAccount",
    "apps/v1": "ControllerRevision DaemonSet Deployment ReplicaSet StatefulSet",
    "autoscaling/v1": "HorizontalPodAutoscaler",
    "autoscaling/v2": "HorizontalPodAutoscaler",
    "batch/v1": "CronJob Job",
    "certificates.k8s.io/v1": "PodCertificateRequest",
    "certificates.k8s.io/v1beta1": "PodCertificateRequest",
    "coordination.k8s.io/v1": "Lease",
    "coordination.k8s.io/v1alpha2": "LeaseCandidate",
    "coordination.k8s.io/v1beta1": "LeaseCandidate",
    "discovery.k8s.io/v1": "EndpointSlice",
    "events.k8s.io/v1": "Event",
    "lifecycle.k8s.io/v1alpha1": "Eviction EvictionRequest",
    "networking.k8s.io/v1": "Ingress NetworkPolicy",
    "policy/v1": "PodDisruptionBudget",
    "rbac.authorization.k8s.io/v1": "Role RoleBinding",
    "resource.k8s.io/v1": "ResourceClaim ResourceClaimTemplate",
    "resource.k8s.io/v1beta1": "ResourceClaim ResourceClaimTemplate",
    "resource.k8s.io/v1beta2": "ResourceClaim ResourceClaimTemplate",
    "scheduling.k8s.io/v1alpha3": "CompositePodGroup PodGroup Workload",
    "scheduling.k8s.io/v1beta1": "PodGroup Workload",
    "storage.k8s.io/v1": "CSIStorageCapacity",
}
_CLUSTER_SCOPED = {
    "v1": "ComponentStatus Namespace Node PersistentVolume",
    "admissionregistration.k8s.io/v1": "MutatingAdmissionPolicy MutatingAdmissionPolicyBinding "
    "MutatingWebhookConfiguration ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding "
    "ValidatingWebhookConfiguration",
    "admissionregistration.k8s.io/v1alpha1": "MutatingAdmissionPolicy "
    "MutatingAdmissionPolicyBinding",
    "admissionregistration.k8s.io/v1beta1": "MutatingAdmissionPolicy "
    "MutatingAdmissionPolicyBinding",
    "apiextensions.k8s.io/v1": "CustomResourceDefinition",
    "apiregistration.k8s.io/v1": "APIService",
    "certificates.k8s.io/v1": "CertificateSigningRequest ClusterTrustBundle",
    "certificates.k8s.io/v1beta1": "ClusterTrustBundle",
    "flowcontrol.apiserver.k8s.io/v1": "FlowSchema PriorityLevelConfiguration",
    "internal.apiserver.k8s.io/v1alpha1": "StorageVersion",
    "networking.k8s.io/v1": "IngressClass IPAddress ServiceCIDR",
    "node.k8s.io/v1": "RuntimeClass",
    "rbac.authorization.k8s.io/v1": "ClusterRole ClusterRoleBinding",
    "resource.k8s.io/v1": "DeviceClass DeviceTaintRule ResourceSlice",
    "resource.k8s.io/v1alpha3": "DeviceTaintRule ResourcePoolStatusRequest",
    "resource.k8s.io/v1beta1": "DeviceClass ResourceSlice",
    "resource.k8s.io/v1beta2": "DeviceClass DeviceTaintRule ResourceSlice",
    "scheduling.k8s.io/v1": "PriorityClass",
    "storage.k8s.io/v1": "CSIDriver CSINode StorageClass VolumeAttachment VolumeAttributesClass",
    "storagemigration.k8s.io/v1": "StorageVersionMigration",
    "storagemigration.k8s.io/v1beta1": "StorageVersionMigration",
}
# the client names a model <Version><Kind> (V1beta1PodGroup), with its group in front
# where that name is another model's
_GROUP_PREFIXES = {
    ("Event", "v1"): "Core",
    ("Event", "events.k8s.io/v1"): "Events",
    ("ResourceClaim", "resource.k8s.io/v1"): "Resource",
}


def _model_name(kind: str, api_version: str) -> str:
    version = api_version.rpartition("/")[2].capitalize()
    return f"{_GROUP_PREFIXES.get((kind, api_version), '')}{version}{kind}"


MODEL_TYPE_META: dict[str, tuple[str, str]] = {
    _model_name(kind, api_version): (kind, api_version)
    for table in (_NAMESPACED, _CLUSTER_SCOPED)
    for api_version, kinds in table.items()
    for kind in kinds.split()
}

NAMESPACED_KINDS = frozenset(kind for kinds in _NAMESPACED.values() for kind in kinds.split())
"""The built-in kinds whose objects live in a namespace (``tests/test_references.py`` checks
them against the client)."""
_VERSIONS = {
    kind: tuple(v for k, v in MODEL_TYPE_META.values() if k == kind)
    for kind, _ in MODEL_TYPE_META.values()
}
ONE_API_VERSION = {kind: versions[0] for kind, versions in _VERSIONS.items() if len(versions) == 1}
"""The apiVersion of each built-in kind served in one alone (``Pod``: ``v1``): a reference
without one gets it, as ``kubectl events --for`` selects events by it."""
_CLUSTER_SCOPED_KINDS = frozenset(k for kinds in _CLUSTER_SCOPED.values() for k in kinds.split())

_GROUPS = {kind: frozenset(v.rpartition("/")[0] for v in vs) for kind, vs in _VERSIONS.items()}
_BY_LOWER_CASE = {kind.lower(): kind for kind in _GROUPS}


def built_in_kind(kind: str, api_version: str) -> str | None:
    """The built-in kind ``kind`` names, in its one right spelling (``pod`` -> ``Pod``); None
    when no built-in kind of that API group (any, without ``api_version``) is spelled so."""
    known = _BY_LOWER_CASE.get(kind.lower())
    if known is None:
        return None
    group = api_version.rpartition("/")[0]
    return known if not api_version or group in _GROUPS[known] else None


def is_namespaced(kind: str, api_version: str) -> bool:
    """True for a built-in namespaced kind (of its own API group, or with no apiVersion)."""
    return kind in NAMESPACED_KINDS and built_in_kind(kind, api_version) == kind


def is_cluster_scoped(kind: str, api_version: str) -> bool:
    """True for a built-in cluster-scoped kind (of its own API group, or with no apiVersion)."""
    return kind in _CLUSTER_SCOPED_KINDS and built_in_kind(kind, api_version) == kind

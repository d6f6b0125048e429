"""Kind and apiVersion of the ``kubernetes`` client's resource models, by class name.

Items read from a list call carry no ``kind``/``apiVersion``; the reference builder takes them
from this table, so the application thread never has to import the client's API modules to
find a model's group. Generated from kubernetes 37 (``tests/test_references.py`` checks it
against the client's own read methods); classes missing here fall back to that slower search.
"""

from __future__ import annotations

__all__ = [
    "KIND_NAMES",
    "MODEL_TYPE_META",
    "NAMESPACED_KINDS",
    "built_in_kind",
    "is_namespaced",
]

MODEL_TYPE_META: dict[str, tuple[str, str]] = {
    "CoreV1Event": ("Event", "v1"),
    "EventsV1Event": ("Event", "events.k8s.io/v1"),
    "ResourceV1ResourceClaim": ("ResourceClaim", "resource.k8s.io/v1"),
    "V1CertificateSigningRequest": ("CertificateSigningRequest", "certificates.k8s.io/v1"),
    "V1ClusterRole": ("ClusterRole", "rbac.authorization.k8s.io/v1"),
    "V1ClusterRoleBinding": ("ClusterRoleBinding", "rbac.authorization.k8s.io/v1"),
    "V1ClusterTrustBundle": ("ClusterTrustBundle", "certificates.k8s.io/v1"),
    "V1ComponentStatus": ("ComponentStatus", "v1"),
    "V1ConfigMap": ("ConfigMap", "v1"),
    "V1ControllerRevision": ("ControllerRevision", "apps/v1"),
    "V1CronJob": ("CronJob", "batch/v1"),
    "V1CustomResourceDefinition": ("CustomResourceDefinition", "apiextensions.k8s.io/v1"),
    "V1DaemonSet": ("DaemonSet", "apps/v1"),
    "V1Deployment": ("Deployment", "apps/v1"),
    "V1DeviceClass": ("DeviceClass", "resource.k8s.io/v1"),
    "V1DeviceTaintRule": ("DeviceTaintRule", "resource.k8s.io/v1"),
    "V1EndpointSlice": ("EndpointSlice", "discovery.k8s.io/v1"),
    "V1Endpoints": ("Endpoints", "v1"),
    "V1FlowSchema": ("FlowSchema", "flowcontrol.apiserver.k8s.io/v1"),
    "V1HorizontalPodAutoscaler": ("HorizontalPodAutoscaler", "autoscaling/v1"),
    "V1Ingress": ("Ingress", "networking.k8s.io/v1"),
    "V1IngressClass": ("IngressClass", "networking.k8s.io/v1"),
    "V1Job": ("Job", "batch/v1"),
    "V1Lease": ("Lease", "coordination.k8s.io/v1"),
    "V1LimitRange": ("LimitRange", "v1"),
    "V1MutatingAdmissionPolicy": ("MutatingAdmissionPolicy", "admissionregistration.k8s.io/v1"),
    "V1MutatingAdmissionPolicyBinding": (
        "MutatingAdmissionPolicyBinding",
        "admissionregistration.k8s.io/v1",
    ),
    "V1MutatingWebhookConfiguration": (
        "MutatingWebhookConfiguration",
        "admissionregistration.k8s.io/v1",
    ),
    "V1Namespace": ("Namespace", "v1"),
    "V1NetworkPolicy": ("NetworkPolicy", "networking.k8s.io/v1"),
    "V1Node": ("Node", "v1"),
    "V1PersistentVolume": ("PersistentVolume", "v1"),
    "V1PersistentVolumeClaim": ("PersistentVolumeClaim", "v1"),
    "V1Pod": ("Pod", "v1"),
    "V1PodCertificateRequest": ("PodCertificateRequest", "certificates.k8s.io/v1"),
    "V1PodDisruptionBudget": ("PodDisruptionBudget", "policy/v1"),
    "V1PodTemplate": ("PodTemplate", "v1"),
    "V1PriorityClass": ("PriorityClass", "scheduling.k8s.io/v1"),
    "V1PriorityLevelConfiguration": (
        "PriorityLevelConfiguration",
        "flowcontrol.apiserver.k8s.io/v1",
    ),
    "V1ReplicaSet": ("ReplicaSet", "apps/v1"),
    "V1ReplicationController": ("ReplicationController", "v1"),
    "V1ResourceClaimTemplate": ("ResourceClaimTemplate", "resource.k8s.io/v1"),
    "V1ResourceQuota": ("ResourceQuota", "v1"),
    "V1ResourceSlice": ("ResourceSlice", "resource.k8s.io/v1"),
    "V1Role": ("Role", "rbac.authorization.k8s.io/v1"),
    "V1RoleBinding": ("RoleBinding", "rbac.authorization.k8s.io/v1"),
    "V1RuntimeClass": ("RuntimeClass", "node.k8s.io/v1"),
    "V1Secret": ("Secret", "v1"),
    "V1Service": ("Service", "v1"),
    "V1ServiceAccount": ("ServiceAccount", "v1"),
    "V1StatefulSet": ("StatefulSet", "apps/v1"),
    "V1StorageClass": ("StorageClass", "storage.k8s.io/v1"),
    "V1StorageVersionMigration": ("StorageVersionMigration", "storagemigration.k8s.io/v1"),
    "V1ValidatingAdmissionPolicy": ("ValidatingAdmissionPolicy", "admissionregistration.k8s.io/v1"),
    "V1ValidatingAdmissionPolicyBinding": (
        "ValidatingAdmissionPolicyBinding",
        "admissionregistration.k8s.io/v1",
    ),
    "V1ValidatingWebhookConfiguration": (
        "ValidatingWebhookConfiguration",
        "admissionregistration.k8s.io/v1",
    ),
    "V1VolumeAttachment": ("VolumeAttachment", "storage.k8s.io/v1"),
    "V1VolumeAttributesClass": ("VolumeAttributesClass", "storage.k8s.io/v1"),
    "V1alpha1Eviction": ("Eviction", "lifecycle.k8s.io/v1alpha1"),
    "V1alpha1EvictionRequest": ("EvictionRequest", "lifecycle.k8s.io/v1alpha1"),
    "V1alpha1MutatingAdmissionPolicy": (
        "MutatingAdmissionPolicy",
        "admissionregistration.k8s.io/v1alpha1",
    ),
    "V1alpha1MutatingAdmissionPolicyBinding": (
        "MutatingAdmissionPolicyBinding",
        "admissionregistration.k8s.io/v1alpha1",
    ),
    "V1alpha1StorageVersion": ("StorageVersion", "internal.apiserver.k8s.io/v1alpha1"),
    "V1alpha2LeaseCandidate": ("LeaseCandidate", "coordination.k8s.io/v1alpha2"),
    "V1alpha3CompositePodGroup": ("CompositePodGroup", "scheduling.k8s.io/v1alpha3"),
    "V1alpha3DeviceTaintRule": ("DeviceTaintRule", "resource.k8s.io/v1alpha3"),
    "V1alpha3PodGroup": ("PodGroup", "scheduling.k8s.io/v1alpha3"),
    "V1alpha3ResourcePoolStatusRequest": ("ResourcePoolStatusRequest", "resource.k8s.io/v1alpha3"),
    "V1alpha3Workload": ("Workload", "scheduling.k8s.io/v1alpha3"),
    "V1beta1ClusterTrustBundle": ("ClusterTrustBundle", "certificates.k8s.io/v1beta1"),
    "V1beta1DeviceClass": ("DeviceClass", "resource.k8s.io/v1beta1"),
    "V1beta1LeaseCandidate": ("LeaseCandidate", "coordination.k8s.io/v1beta1"),
    "V1beta1MutatingAdmissionPolicy": (
        "MutatingAdmissionPolicy",
        "admissionregistration.k8s.io/v1beta1",
    ),
    "V1beta1MutatingAdmissionPolicyBinding": (
        "MutatingAdmissionPolicyBinding",
        "admissionregistration.k8s.io/v1beta1",
    ),
    "V1beta1PodCertificateRequest": ("PodCertificateRequest", "certificates.k8s.io/v1beta1"),
    "V1beta1PodGroup": ("PodGroup", "scheduling.k8s.io/v1beta1"),
    "V1beta1ResourceClaim": ("ResourceClaim", "resource.k8s.io/v1beta1"),
    "V1beta1ResourceClaimTemplate": ("ResourceClaimTemplate", "resource.k8s.io/v1beta1"),
    "V1beta1ResourceSlice": ("ResourceSlice", "resource.k8s.io/v1beta1"),
    "V1beta1StorageVersionMigration": (
        "StorageVersionMigration",
        "storagemigration.k8s.io/v1beta1",
    ),
    "V1beta1Workload": ("Workload", "scheduling.k8s.io/v1beta1"),
    "V1beta2DeviceClass": ("DeviceClass", "resource.k8s.io/v1beta2"),
    "V1beta2DeviceTaintRule": ("DeviceTaintRule", "resource.k8s.io/v1beta2"),
    "V1beta2ResourceClaim": ("ResourceClaim", "resource.k8s.io/v1beta2"),
    "V1beta2ResourceClaimTemplate": ("ResourceClaimTemplate", "resource.k8s.io/v1beta2"),
    "V1beta2ResourceSlice": ("ResourceSlice", "resource.k8s.io/v1beta2"),
    "V2HorizontalPodAutoscaler": ("HorizontalPodAutoscaler", "autoscaling/v2"),
}

NAMESPACED_KINDS = frozenset(
    (
        "CompositePodGroup",
        "ConfigMap",
        "ControllerRevision",
        "CronJob",
        "DaemonSet",
        "Deployment",
        "EndpointSlice",
        "Endpoints",
        "Event",
        "Eviction",
        "EvictionRequest",
        "HorizontalPodAutoscaler",
        "Ingress",
        "Job",
        "Lease",
        "LeaseCandidate",
        "LimitRange",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Pod",
        "PodCertificateRequest",
        "PodDisruptionBudget",
        "PodGroup",
        "PodTemplate",
        "ReplicaSet",
        "ReplicationController",
        "ResourceClaim",
        "ResourceClaimTemplate",
        "ResourceQuota",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
        "StatefulSet",
        "Workload",
    )
)
"""The built-in kinds whose objects live in a namespace (the client reads them with a
``read_namespaced_*`` method; ``tests/test_references.py`` checks the list against it). An
event about one of them without a namespace would be filed where ``kubectl describe`` never
looks."""

_GROUPS: dict[str, frozenset[str]] = {
    kind: frozenset(v.rpartition("/")[0] for k, v in MODEL_TYPE_META.values() if k == kind)
    for kind, _ in MODEL_TYPE_META.values()
}
_BY_LOWER_CASE = {kind.lower(): kind for kind in _GROUPS}

KIND_NAMES = frozenset(_GROUPS)
"""Every built-in kind, in its one spelling."""


def built_in_kind(kind: str, api_version: str) -> str | None:
    """The built-in kind ``kind`` names, in its one right spelling (``pod`` -> ``Pod``).

    None when no built-in kind of that API group (any, when ``api_version`` is empty) is
    spelled so, in any case: a custom resource's kind is left alone.
    """
    known = _BY_LOWER_CASE.get(kind.lower())
    if known is None:
        return None
    group = api_version.rpartition("/")[0]
    return known if not api_version or group in _GROUPS[known] else None


def is_namespaced(kind: str, api_version: str) -> bool:
    """True for a built-in namespaced kind (of its own API group, or with no apiVersion)."""
    return kind in NAMESPACED_KINDS and built_in_kind(kind, api_version) == kind

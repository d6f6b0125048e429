"""The pod this process runs in, for the handler's ``default_involved="pod"``.

A front door beside :mod:`k8s_logging_events._records`: a record without an involved object
becomes an event about the pod, named once, when the handler is built, by the Downward API
(:func:`from_environment`; the variables: docs/configuration.md, ``default_involved``).
``kubectl describe pod`` selects events by uid, so without ``POD_UID`` :class:`PodUidSink`,
around the handler's sink, reads it from the API server once, on a writer thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from k8s_logging_events import _apis, _diagnostics, _process, models, references
from k8s_logging_events import sink as sinks

POD = "pod"
"""The ``default_involved`` value that names the pod the process runs in."""

NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
"""Where a pod with a mounted service account finds its namespace."""

HOSTNAME_LIMIT = 63
"""The kubelet cuts a pod's ``HOSTNAME`` to this many characters (a DNS label), then drops
the ``-`` or ``.`` the cut may leave at its end."""

_DOWNWARD_API_HINT = (
    "set POD_NAME, POD_NAMESPACE and POD_UID from the Downward API (env valueFrom.fieldRef "
    "metadata.name, metadata.namespace, metadata.uid; see examples/deployment.yaml)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class PodIdentity:
    """Who the pod is, as far as the environment tells; ``ref`` is None outside a pod."""

    ref: models.ObjectReference | None
    problem: str = ""
    """Outside a pod: why there is no pod. Inside: what is doubtful (a name cut at 63)."""


def from_environment() -> PodIdentity:
    """Read the pod's identity from the Downward API variables (and :data:`NAMESPACE_FILE`)."""
    env = os.environ
    name = env.get("POD_NAME", "").strip()
    namespace = env.get("POD_NAMESPACE", "").strip() or _read_namespace_file(NAMESPACE_FILE)
    problem = ""
    if not name:
        name = env.get("HOSTNAME", "").strip()
        if len(name) >= HOSTNAME_LIMIT - 1:  # 62: cut, then a final '-' or '.' dropped
            problem = (
                f"the pod name comes from HOSTNAME, which Kubernetes cuts to {HOSTNAME_LIMIT} "
                "characters (and then drops a final '-' or '.'), so it may not be the pod's "
                f"name: {_DOWNWARD_API_HINT}"
            )
    missing = [] if name else ["name (POD_NAME or HOSTNAME)"]
    if not namespace:
        missing.append(f"namespace (POD_NAMESPACE or {NAMESPACE_FILE})")
    if missing:
        found = (
            f"no {missing[0]}" if len(missing) == 1 else "neither a {} nor a {}".format(*missing)
        )
        return PodIdentity(
            None,
            f'default_involved="pod" but this process does not run in a pod, or cannot tell '
            f"which: it found {found}. Records without an involved object make no "
            f"events; {_DOWNWARD_API_HINT}",
        )
    uid = env.get("POD_UID", "").strip()
    ref = models.ObjectReference(
        kind="Pod", api_version="v1", name=name, namespace=namespace, uid=uid
    )
    try:  # the rule for every involved object's namespace, said once here, not per record
        references.object_reference(ref)
    except references.InvalidObjectError as error:
        return PodIdentity(
            None,
            f'default_involved="pod" cannot name pod {name!r}: {error.args[0]} (read from '
            f"POD_NAMESPACE or {NAMESPACE_FILE}). Records without an involved object make "
            f"no events; {_DOWNWARD_API_HINT}",
        )
    return PodIdentity(ref, problem)


def report(identity: PodIdentity, *, can_read_uid: bool) -> None:
    """Report, when the handler is built, what will keep the pod's events from view
    (``can_read_uid``: the handler owns its sink, and so can read a missing uid)."""
    if identity.problem:
        _diagnostics.report(logging.WARNING, "%s", identity.problem)
    ref = identity.ref
    if ref is not None and not ref.uid and not can_read_uid:
        _diagnostics.report(
            logging.WARNING,
            "Events about pod %s/%s are written without its uid, so `kubectl describe pod` "
            "will not show them: POD_UID is not set and the handler cannot read the uid "
            "through a given broadcaster. Set POD_UID from the Downward API (env "
            "valueFrom.fieldRef metadata.uid) to fix it",
            ref.namespace,
            ref.name,
        )


def _read_namespace_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read(256).strip()
    except (OSError, UnicodeDecodeError):
        return ""


class PodUidSink(_process.Locked):
    """An EventSink around ``inner`` that puts the uid into events about ``pod`` (which has none).

    The uid is read once, through ``inner.read_pod_uid`` (a GET of the pod), on the writer
    thread at the first write about the pod. A connection failure or a 429 or 5xx fails
    that write, to be retried with the read; a refusal (403, 404) or a sink that cannot
    read pods is final: events go without the uid, and why is reported once. Answers about
    the pod carry the reference as given, so that correlation sees one object throughout;
    an event stored about another uid (an earlier pod of this name) is left as it is.
    """

    def __init__(self, inner: sinks.EventSink, pod: models.ObjectReference) -> None:
        self._inner = inner
        self._pod = pod
        self._resolved: models.ObjectReference | None = None
        super().__init__()  # a writer holds the lock while it reads the pod (a request)

    def create(self, event: models.Event) -> models.Event:
        return self._restored(self._inner.create(self._with_uid(event)), event)

    def update(self, event: models.Event) -> models.Event:
        return self._restored(self._inner.update(self._with_uid(event)), event)

    def patch(self, event: models.Event, data: bytes) -> models.Event:
        # a patch never names the involved object: no uid to put in
        return self._restored(self._inner.patch(event, data), event)

    def read(self, event: models.Event) -> models.Event:
        """Read the stored ``event`` through the wrapped sink (TypeError if it cannot)."""
        reader = getattr(self._inner, "read", None)
        if not callable(reader):
            raise TypeError(f"the sink {type(self._inner).__name__} cannot read events")
        return self._restored(reader(event), event)

    @property
    def api(self) -> str:
        return str(getattr(self._inner, "api", sinks.CORE_V1))

    @property
    def api_known(self) -> bool:
        return _apis.api_known(self._inner)

    def drain(self, on: bool) -> None:
        _apis.call_optional(self._inner, "drain", on)

    @property
    def waiting_for_rate_limit(self) -> int:
        return int(getattr(self._inner, "waiting_for_rate_limit", 0) or 0)

    def close(self) -> None:
        _apis.call_optional(self._inner, "close")

    def _with_uid(self, event: models.Event) -> models.Event:
        if event.involved_object != self._pod or (ref := self._resolve()) is self._pod:
            return event
        return dataclasses.replace(event, involved_object=ref)

    def _restored(self, answer: models.Event, given: models.Event) -> models.Event:
        # only an answer about this pod, with the uid read: an event read under our name may
        # be about an earlier pod of this name (a StatefulSet's, made anew), not ours
        if given.involved_object == self._pod and answer.involved_object == self._resolved:
            return dataclasses.replace(answer, involved_object=self._pod)
        return answer

    def _resolve(self) -> models.ObjectReference:
        resolved = self._resolved
        if resolved is not None:
            return resolved
        with self._lock:  # writer threads only: one GET, whoever comes first
            if self._resolved is None:
                self._resolved = self._read()
            return self._resolved

    def _read(self) -> models.ObjectReference:
        pod = self._pod
        reader = getattr(self._inner, "read_pod_uid", None)
        why = f"the sink {type(self._inner).__name__} cannot read pods"
        try:
            if callable(reader):
                return dataclasses.replace(pod, uid=str(reader(pod.namespace, pod.name)))
        except sinks.ApiStatusError as error:
            if error.is_retryable:
                raise  # 429, 5xx: the write is retried, and the read with it
            why = f"the pod could not be read: {error}"
            if error.status == 403:
                why = (
                    f"not permitted to get pods in namespace {pod.namespace} (grant the verb get "
                    f"on pods in the Role, as examples/deployment.yaml does): {error}"
                )
            elif error.status == 404:
                why = f"no pod named {pod.name!r} in namespace {pod.namespace} (is the name right?)"
        except (TypeError, sinks.RequestConstructionError) as error:
            why = f"the pod could not be read: {error}"
        _diagnostics.report(
            logging.WARNING,
            "Events about pod %s/%s are written without its uid, so `kubectl describe pod` "
            "will not show them (it selects events by uid; `kubectl events --for pod/%s` and "
            "`kubectl get events` do): %s. Set POD_UID from the Downward API (env valueFrom."
            "fieldRef metadata.uid) to fix it",
            pod.namespace,
            pod.name,
            pod.name,
            why,
        )
        return pod

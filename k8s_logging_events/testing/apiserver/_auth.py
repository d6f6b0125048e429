"""HTTPS, bearer tokens and client certificates for the local API server.

Part of :class:`~k8s_logging_events.testing.LocalApiServer`, on the test side of the
pipeline, so that the sink under test and ``kubectl`` meet what a cluster asks of them: TLS
signed by a cluster CA they must be told to trust, and credentials on every request.
:class:`TlsMaterial` makes a throwaway CA (with ``trustme``, a test-only dependency
imported only when TLS is asked for), the server's certificate for ``127.0.0.1``,
``localhost`` and ``::1``, and client certificates; :class:`Authenticator` decides whether
a request carries valid credentials, and :func:`unauthorized` is the ``401`` the real
server answers when it does not (with anonymous authentication off).
:func:`kubeconfig_text` writes a kubeconfig that ``kubectl`` and
``kubernetes.config.load_kube_config`` read.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

from k8s_logging_events.testing.apiserver._errors import ApiError, status_body


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A client certificate signed by the server's CA, for client certificate authentication.

    The API server takes the user name from the certificate's common name and the groups
    from its organizations, as a real one does.
    """

    user: str
    """The user name (the certificate's CN)."""
    groups: tuple[str, ...]
    """The groups (the certificate's O entries)."""
    cert_pem: bytes
    """The certificate, PEM."""
    key_pem: bytes
    """Its private key, PEM."""
    cert_file: str
    """Path of the certificate file (``client-certificate`` in a kubeconfig)."""
    key_file: str
    """Path of the key file (``client-key`` in a kubeconfig)."""


ANONYMOUS = "system:anonymous"
"""The user of a request the server takes without asking for credentials."""

LOCAL_ADMIN = "local-admin"
"""The user the server's bearer token stands for, and of the default client certificate:
switching a test from one credential to the other keeps its identity."""


def unauthorized() -> ApiError:
    """The ``401 Unauthorized`` Status of a request without valid credentials."""
    return ApiError(status_body(401, "Unauthorized", "Unauthorized"))


class TlsMaterial:
    """A throwaway CA, the server's certificate and client certificates, kept in files.

    The files live in a private temporary directory until :meth:`cleanup`.

    Raises:
        RuntimeError: ``trustme`` is not installed.
    """

    def __init__(self) -> None:
        try:
            import trustme  # a test-only dependency: only needed for tls=True
        except ImportError:  # pragma: no cover - the dev extra has it
            raise RuntimeError(
                "LocalApiServer(tls=True) needs the trustme package: pip install trustme"
            ) from None
        self._ca = trustme.CA(organization_name="k8s-logging-events local API server")
        self._server = self._ca.issue_cert("127.0.0.1", "localhost", "::1")
        self._directory = tempfile.TemporaryDirectory(prefix="k8s-apiserver-tls-")
        self.ca_pem: bytes = self._ca.cert_pem.bytes()
        self.ca_file = self._write("ca.crt", self.ca_pem)
        self._issued = 0

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self._directory.name, name)
        with open(path, "wb") as file:
            file.write(data)
        return path

    def server_context(self, *, client_certificates: bool) -> ssl.SSLContext:
        """The server's TLS context; it asks for client certificates when told to."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server.configure_cert(context)
        if client_certificates:
            # like --client-ca-file: verify a certificate when the client sends one
            self._ca.configure_trust(context)
            context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def issue_client_certificate(self, user: str, groups: tuple[str, ...]) -> ClientCertificate:
        """Sign a client certificate for ``user`` in ``groups``."""
        leaf = self._ca.issue_cert(
            f"{user}@client.invalid",
            common_name=user,
            organization_name=groups[0] if groups else None,
        )
        cert_pem = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        key_pem = leaf.private_key_pem.bytes()
        self._issued += 1
        number = self._issued
        return ClientCertificate(
            user=user,
            groups=groups[:1],
            cert_pem=cert_pem,
            key_pem=key_pem,
            cert_file=self._write(f"client-{number}.crt", cert_pem),
            key_file=self._write(f"client-{number}.key", key_pem),
        )

    def cleanup(self) -> None:
        """Delete the files."""
        self._directory.cleanup()


class Authenticator:
    """Whether a request is authenticated: a bearer token, or a verified client certificate.

    Args:
        token: the one bearer token accepted (None: tokens are not accepted).
        client_certificates: accept a client certificate that the TLS layer verified.
    """

    def __init__(self, token: str | None, client_certificates: bool) -> None:
        self.token = token
        self.client_certificates = client_certificates

    @property
    def required(self) -> bool:
        """False when the server takes anonymous requests (no token, no client certificates)."""
        return self.token is not None or self.client_certificates

    def authenticate(
        self, authorization: str, peer_certificate: dict[str, Any] | None
    ) -> str | None:
        """Check one request's ``Authorization`` header and its TLS peer certificate.

        Returns the authenticated user's name (:data:`ANONYMOUS` when the server asks for
        no credentials), or None when the request must be refused with a 401. A verified
        client certificate names its user by its common name and is tried first, as the
        real server's x509 authenticator is.
        """
        if not self.required:
            return ANONYMOUS
        certificate_user = _common_name(peer_certificate) if self.client_certificates else ""
        if certificate_user:  # the first authenticator that succeeds wins: the token is not read
            return certificate_user
        # kube-apiserver's split: the token is the second space-separated part, so a second
        # space before it leaves it empty (refused) and words after it are not read
        parts = authorization.strip().split(" ", 2)
        if self.token is None or len(parts) < 2 or parts[0].lower() != "bearer":
            return None
        return LOCAL_ADMIN if hmac.compare_digest(parts[1].encode(), self.token.encode()) else None


def _common_name(certificate: dict[str, Any] | None) -> str:
    """The subject's common name of a certificate as ``getpeercert()`` gives it ("" if none)."""
    for attributes in (certificate or {}).get("subject", ()):
        for key, value in attributes:
            if key == "commonName":
                return str(value)
    return ""


def kubeconfig_text(
    server: str,
    *,
    ca_pem: bytes | None,
    token: str | None,
    client_certificate: ClientCertificate | None,
    name: str = "k8s-logging-events-local",
) -> str:
    """A kubeconfig with one cluster, user and context (current) for ``server``.

    JSON is YAML, so the text is JSON: ``kubectl`` and ``load_kube_config`` read it as is.
    """

    def data(pem: bytes) -> str:
        return base64.b64encode(pem).decode()

    cluster: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = data(ca_pem)
    user: dict[str, Any] = {}
    if token is not None:
        user["token"] = token
    if client_certificate is not None:
        user["client-certificate-data"] = data(client_certificate.cert_pem)
        user["client-key-data"] = data(client_certificate.key_pem)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    }
    return json.dumps(config, indent=2) + "\n"

"""The local Kubernetes Events API server: what the sink talks to in tests and in the demo.

This is the test side of the pipeline, independent of the library's own rules (it validates
with transcriptions of the real API server's, so that a bug shared by both cannot pass
unnoticed). :class:`LocalApiServer` is the public facade; the private modules behind it:

* ``_server``: the facade -- lifecycle, clients, stored objects -- and ``_controls``: its
  fault injection, request log and connection refusal;
* ``_http``: the HTTP/1.1 transport -- the port, connection threads, TLS, refusal -- and
  ``_exchange``: reading one request off a connection and writing its answer;
* ``_dispatch``: one request through the server -- logged, met by a fault, or answered;
* ``_faults``: injected faults and the request log;
* ``_auth``: HTTPS material, bearer tokens, client certificates, kubeconfig;
* ``_admission``: the ``EventRateLimit`` admission plugin;
* ``_rest``: routing, discovery and Namespaces; ``_rest_events``: the Events handlers;
  ``_rest_pods``: the Pods handlers; ``_requests``: one request and its answer;
  ``_tables``: ``meta.k8s.io`` Tables;
* ``_schema``: decoding bodies into the canonical core/v1 form, and the events.k8s.io/v1 view;
* ``_validation``: the API server's checks; ``_selectors``: field and label selectors;
* ``_objects`` and ``_store``: what is stored, and the store with its change history;
  ``_store_pods``: the store's Pods; ``_pods``: what the server knows of Pods (defaults,
  validation, selectable fields); ``_resources``: each resource of each API as its lists
  and watches select it (kind, selectable fields, field labels);
* ``_watch``: watch streams; ``_patch``: the three patch formats;
* ``_errors``: ``Status`` bodies and field errors; ``_gofmt``: values written as Go does.
"""

from k8s_logging_events.testing.apiserver._auth import ClientCertificate
from k8s_logging_events.testing.apiserver._faults import Fault, FaultAction, RecordedRequest
from k8s_logging_events.testing.apiserver._server import LocalApiServer

__all__ = ["ClientCertificate", "Fault", "FaultAction", "LocalApiServer", "RecordedRequest"]

"""What vulture cannot see used: ``./dev test`` runs vulture on the package, bench/ and examples/.

Vulture reports a name that nothing in those paths reads. A name read here counts as read
(vulture matches by name alone, so one entry covers every attribute of that name), and each
entry says who really reads it. Anything vulture reports that is not here is dead: remove it,
do not list it. This file is never run; mypy checks it, so an entry whose attribute is renamed
or removed fails ``./dev test`` instead of hiding dead code.
"""

import http.server
import logging
from typing import Any, cast

import tenacity

import k8s_logging_events
from k8s_logging_events import _http
from k8s_logging_events.broadcaster import Broadcaster, FullChannelBehavior
from k8s_logging_events.correlator import EventCorrelator
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.metrics import _Collector
from k8s_logging_events.recorder import EventBroadcaster, EventRecorder
from k8s_logging_events.references import _ShortRepr
from k8s_logging_events.testing import FakeClock, FakeEventSink, FakeRecorder, LocalApiServer
from k8s_logging_events.testing.apiserver import RecordedRequest
from k8s_logging_events.testing.apiserver._exchange import Handler
from k8s_logging_events.testing.apiserver._http import _HttpServer

# instances to read instance attributes from (this file is never run)
retry_state = cast(tenacity.RetryCallState, None)
configuration = cast(Any, None)  # kubernetes.client.Configuration, which has no types
request_handler = cast(Handler, None)
http_server = cast(http.server.HTTPServer, None)
recorded = cast(RecordedRequest, None)
channel = cast(_http.Channel, None)
bench_poster = cast(Any, None)  # bench/perf_targets.py's KopfPoster (bench/ is no package)

# -- protocols: read by the interpreter, the standard library or a dependency -----------------

k8s_logging_events.__getattr__  # a module __getattr__ (PEP 562): answers __version__
k8s_logging_events.testing.__dir__  # a module __dir__ (PEP 562): read by dir()
logging.Manager.emittedNoHandlerWarning  # read by logging's last-resort warning (bench)
retry_state.attempt_number  # read by tenacity's stop and wait strategies
configuration.retries  # read by the kubernetes client's urllib3 pool manager
configuration.proxy_headers  # sent by the kubernetes client's urllib3 ProxyManager to the proxy
configuration.no_proxy  # read by the kubernetes client as it chooses its pool (proxy or not)
configuration.ssl_ca_cert  # read by the kubernetes client's urllib3 pool manager
configuration.api_key_prefix  # read by the kubernetes client's authentication settings
_Collector.collect  # a prometheus_client collector: the registry calls it on each scrape
_ShortRepr.repr_instance  # reprlib.Repr's hook for an object of no built-in type
# http.server's request handler: class settings it reads and hooks it calls
Handler.protocol_version
Handler.disable_nagle_algorithm
Handler.server_version
Handler.sys_version
Handler.handle_one_request
Handler.log_message
request_handler.raw_requestline  # read by BaseHTTPRequestHandler.parse_request
request_handler.requestline  # read by BaseHTTPRequestHandler.log_request
# socketserver's server: a class setting it reads and a hook it calls
_HttpServer.daemon_threads
_HttpServer.handle_error
http_server.server_name  # read by http.server.HTTPServer's users, as after its own bind
# asyncio keeps only a weak reference to a task: the bench's poster loop keeps its own
bench_poster._task

# the handler's class mark, read by _diagnostics with getattr(OWN_HANDLER_MARK)
KubernetesEventHandler.ignores_library_reports
# read by logging.Formatter.format on the record copy that _records clears
logging.LogRecord.exc_text

# -- public API that only users (and our tests, which vulture does not read) call -------------

EventCorrelator.update_state  # client-go's UpdateState (docs/correlation.md)
# client-go's surface and the watch broadcaster's (docs/concepts.md, docs/integrations.md)
FullChannelBehavior.DROP
Broadcaster.watch_with_prefix
Broadcaster.action_or_drop
EventBroadcaster.start_logging
EventRecorder.eventf
EventRecorder.annotated_eventf
# the test doubles (docs/testing.md, docs/local-apiserver.md)
FakeClock.step_wall
FakeRecorder.eventf
FakeRecorder.annotated_eventf
FakeEventSink.fail_next
LocalApiServer.clear_faults
LocalApiServer.wait_for_request
LocalApiServer.refusing
LocalApiServer.events_v1
recorded.raw_body

# -- the lean channel's counters: the only way to see from outside that a connection was
#    reused, resent on, or closed out of step (tests/test_http.py reads them) ----------------

channel.connections_opened
channel.resends
channel.out_of_step
channel.idle_connections

"""Where the sink's client configuration comes from, what credentials it sends, and when its
own client loads them again.

Beside the sink, at the I/O end of the pipeline (docs/architecture.md). The kind and source
of the credentials, never their value, go into the report of a 401.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import ipaddress
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from k8s_logging_events import _errors, _process

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105
"""Where a pod's service account token is mounted (a path, not a secret)."""

_USER_SOURCES = (
    ("exec", "a token from the kubeconfig's exec plugin"),
    ("auth-provider", "a token from the kubeconfig's auth provider"),
    ("tokenFile", "a bearer token from the token file the kubeconfig names"),
    ("token", "a bearer token written in the kubeconfig"),
    ("username", "a user name and password (basic authentication) from the kubeconfig"),
)


def in_cluster() -> bool:
    """True in a pod whose service account token is mounted (``KUBERNETES_SERVICE_HOST`` set)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(SERVICE_ACCOUNT_TOKEN)


def kubeconfig_paths(kubeconfig: str | None = None) -> list[str]:
    """The kubeconfig files the client would read: the given one, ``KUBECONFIG``, the default."""
    if kubeconfig:
        return [kubeconfig]
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return paths or [os.path.join("~", ".kube", "config")]


def uses_in_cluster(kubeconfig: str | None, context: str | None) -> bool:
    """In a pod, with neither a kubeconfig nor a context asked for (either means a kubeconfig)."""
    return kubeconfig is None and context is None and in_cluster()


def find_configuration(kubeconfig: str | None = None, context: str | None = None) -> str | None:
    """Say where a client configuration would come from, without loading it (None: nowhere)."""
    if uses_in_cluster(kubeconfig, context):
        return "the in-cluster service account"
    for path in kubeconfig_paths(kubeconfig):
        if os.path.isfile(os.path.expanduser(path)):
            return f"the kubeconfig {path}"
    return None


def not_found_report(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The warning for ``sink: auto`` with no configuration: what was tried, what to set."""
    tried = []
    if context is not None and kubeconfig is None and in_cluster():
        tried.append(
            f"not the in-cluster service account (the context option {context!r} "
            "names a kubeconfig context)"
        )
    elif kubeconfig is None:
        why = f"no token at {SERVICE_ACCOUNT_TOKEN}"
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            why = "KUBERNETES_SERVICE_HOST is not set"
        tried.append(f"the in-cluster service account ({why})")
    source = "KUBECONFIG" if os.environ.get("KUBECONFIG") else "the default path"
    source = "the kubeconfig option" if kubeconfig else source
    tried += [f"the kubeconfig {p} ({source}: no such file)" for p in kubeconfig_paths(kubeconfig)]
    return (
        "No Kubernetes configuration found, so events go to no API server (they are counted "
        f"as 'discarded' in stats()). Tried: {'; '.join(tried)}. To write events, set "
        "KUBECONFIG (or kubeconfig=PATH on the handler) to a kubeconfig file, set sink=URL "
        "for an API server reached without credentials (http://127.0.0.1:8001 for kubectl "
        "proxy), or run in a pod with a service account (in-cluster); sink=None records "
        "events nowhere without this warning"
    )


def url_without_credentials(url: str) -> str:
    """``url`` for a URL sink, which sends no credentials: an http(s) URL with a host and a
    port a socket can have, else a ValueError that never shows a user name or password. So
    is one with a user name (or password) in it, which says where credentials go, and one
    with a query or fragment (a token, often): each request's path would follow it."""
    try:
        parts = urlsplit(url)
    except ValueError as error:  # an unclosed "[" (IPv6): shown_url could not cut the URL
        raise ValueError(f"sink: the URL sink is no URL ({error})") from None
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise ValueError(
            f"sink: a URL sink is the API server's base URL ({shown_url(url)}), which the "
            "client puts each request's path after, so it takes no query or fragment; give "
            "credentials in a kubeconfig (the kubeconfig option, or KUBECONFIG, with sink: auto)"
        )
    if "@" in _after_scheme(url)[1]:  # a password's "/" may end the netloc before its "@"
        raise ValueError(
            f"sink: a URL sink ({shown_url(url)}) sends no credentials, so a user name or password "
            "in its URL would be ignored; give credentials in a kubeconfig (the kubeconfig "
            "option, or KUBECONFIG, with sink: auto), or write through kubectl proxy"
        )
    try:
        parts.port  # noqa: B018 - a port that is no number, or out of range, raises
    except ValueError as error:
        raise ValueError(f"sink {url!r} has no valid port: {error}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"sink {url!r} names no host (http(s)://host[:port])")
    return url


def shown_url(url: str) -> str:
    """``url`` as a report may show it: without a user name, password, query or fragment.
    A password written unencoded may hold ``/``, ``#`` or ``?``: all before the last ``@``
    goes (of a URL without ``//`` too, ``user:password@host``)."""
    scheme, rest = _after_scheme(url)
    parts = urlsplit(scheme + rest.rpartition("@")[2])
    return parts._replace(query="", fragment="").geturl()


def checked_proxy(configuration: Any) -> None:
    """Check the proxy URL of ``configuration`` (a kubeconfig's ``proxy-url``, else
    ``HTTPS_PROXY`` or ``HTTP_PROXY``) before a client is built on it, as urllib3 reads it
    right then (``NO_PROXY`` applies to the environment's alone); and send its user name and
    password as Basic ``Proxy-Authorization``, as Go's transport (kubectl's) does: urllib3
    ignores them, and the proxy answered 407.
    The environment's proxy is not for a loopback host, which Go's never proxies: every
    write to ``kubectl proxy`` went to a corporate proxy, and failed; nor is ``ALL_PROXY``,
    which Go never reads; without a scheme, it is http, as in Go."""
    from urllib.request import getproxies  # as the client reads them (imported with it)

    from_env = configuration._proxy_from_env
    if not from_env:
        # a kubeconfig's proxy-url carries every request in Go's transport, whatever NO_PROXY
        # says: a NO_PROXY naming the cluster's addresses sent the writes past the proxy
        configuration.no_proxy = None
    server = urlsplit(str(configuration.host))
    host = server.hostname or ""
    with contextlib.suppress(ValueError):  # a name, not an address: only localhost is loopback
        address = ipaddress.ip_address("::1" if host == "localhost" else host)
        # ::ffff:127.0.0.1 is loopback to Go, to Python's is_loopback only from 3.13
        address = getattr(address, "ipv4_mapped", None) or address
        if from_env and address.is_loopback:
            configuration.proxy = None
    if from_env and not getproxies().get(server.scheme.lower()):
        # ALL_PROXY alone, which the client falls back on and Go's transport never reads: a
        # desktop's SOCKS one failed the client's build (no PySocks), an http one took the
        # writes where kubectl's never go
        configuration.proxy = None
    url = str(getattr(configuration, "proxy", None) or "")
    if from_env and url and "://" not in url:
        # HTTPS_PROXY=proxy.corp:3128, which Go's transport (and curl) take for http://:
        # urllib3 refused it, so no client was built and every event was lost
        url = configuration.proxy = f"http://{url}"
    check_readable(url, "the proxy URL")
    parts = urlsplit(url)
    if parts.scheme.lower().startswith("socks"):  # kubectl's own, from ssh -D; urllib3's extra
        try:
            importlib.import_module("socks")
        except ImportError:  # the build's error said only "No module named 'socks'"
            raise ValueError(
                f"the proxy URL ({shown_url(url)}) is a SOCKS proxy, which the Kubernetes "
                "client reaches only with PySocks installed (pip install pysocks)"
            ) from None
    if parts.username is not None and parts.scheme.lower() in ("http", "https"):  # not SOCKS
        # as Go decodes them: the bytes themselves (a Latin-1 password's %E9, or that byte
        # unencoded, which os.environ holds as a surrogate), never U+FFFD
        pair = unquote_to_bytes(
            f"{parts.username}:{parts.password or ''}".encode("utf-8", "surrogateescape")
        )
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
        configuration.proxy_headers = {"Proxy-Authorization": authorization}


def _after_scheme(url: str) -> tuple[str, str]:
    """``url`` cut after its ``//``; the whole of it is the rest when it has none."""
    scheme, slashes, rest = url.partition("//")
    return (scheme + slashes, rest) if slashes else ("", url)


def check_readable(url: str, what: str = "the API server URL") -> None:
    """Raise ValueError for a URL (the server's, a proxy's) with a user name or password that
    urllib3 cannot read (the client's errors, for a proxy as the client is built, would
    quote the password): one holding an unencoded ``/``, ``#`` or ``?`` hides its host,
    and a port out of range has urllib3 quote the whole URL. So is any URL whose port is
    no port (``:6443x``, ``:99999``, a ``KUBERNETES_SERVICE_PORT`` of a name): every write
    failed, retried in vain, where kubectl refuses the URL at once."""
    if "@" not in url.partition("//")[2]:
        try:
            urlsplit(url).port  # noqa: B018 - a port that is no number, or out of range, raises
        except ValueError as error:  # its text holds the port alone
            raise ValueError(f"{what} ({shown_url(url)}) cannot be read: {error}") from None
        return
    if "@" not in urlsplit(url).netloc:
        elsewhere = ", or give the credentials as the kubeconfig's user" if "server" in what else ""
        raise ValueError(
            f"{what} ({shown_url(url)}) cannot be read: the user name or password in it holds "
            f"'/', '#' or '?' (percent-encode them{elsewhere})"
        )
    from urllib3.util import parse_url

    try:
        parse_url(url)
    except ValueError as error:  # urllib3's LocationParseError; never chained: it quotes
        shown = shown_url(url)
        why = str(error).replace(url, shown)
        raise ValueError(f"{what} ({shown}) cannot be read: {why}") from None


def default_api_client(
    kubeconfig: str | None = None,
    context: str | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> tuple[Any, str]:
    """``(api_client, credentials)``: a private client from the in-cluster service account,
    else the kubeconfig, with urllib3's retries off (only the writer retries), whose token
    is loaded again as client-go does (:class:`_Renewal`; durations on ``monotonic``)."""
    from kubernetes import client, config

    configuration: Any = client.Configuration()
    loader: Any = config
    user: dict[str, Any] = {}
    if uses_in_cluster(kubeconfig, context):

        def load(target: Any) -> None:
            loader.load_incluster_config(client_configuration=target)

        reload = load
        origin = f"the service account token file {SERVICE_ACCOUNT_TOKEN} (in-cluster)"
        sources = ["a bearer token"]
    else:
        # the client reads KUBECONFIG once, at import; read it now so a later change counts
        path = _without_empty_files(kubeconfig or os.environ.get("KUBECONFIG") or None)

        def load(target: Any) -> None:
            loader.load_kube_config(
                config_file=path, context=context, client_configuration=target, persist_config=False
            )

        def reload(target: Any) -> None:
            # the loader's load_and_set but for the cluster's part, which would write the CA
            # and client certificate of -data to temporary files again: after the client's
            # clean-up at exit, for good
            from kubernetes.config import kube_config as module

            kube_config: Any = module
            users = kube_config._get_kube_config_loader(
                filename=path or kube_config.KUBE_CONFIG_DEFAULT_LOCATION, active_context=context
            )
            users._load_authentication()
            users._set_config(target)

        origin, context, user = _kubeconfig_origin(path, context)
        sources = [text for key, text in _USER_SOURCES if user.get(key)]
    try:
        load(configuration)
    except (TypeError, AttributeError) as error:  # the client's words for a file of another kind
        raise ValueError(
            f"it holds no kubeconfig (a YAML mapping of clusters, users...): {error}"
        ) from None
    # no token yet: an exec plugin that failed (an auth provider the client lacks never gives one)
    if _token(configuration) or (user.get("exec") and not configuration.cert_file):
        renewal = _Renewal(reload, configuration, origin, bool(user.get("tokenFile")), monotonic)
        renewal.costly = bool(user.get("exec") or user.get("auth-provider"))
        renewal.plugin = user.get("exec") or {}
        configuration.refresh_api_key_hook = renewal
        # even empty: the client calls the hook only for a configuration with a token
        configuration.api_key = {"BearerToken": _token(configuration)}
    configuration.retries = False
    checked_proxy(configuration)
    api_client = client.ApiClient(configuration)
    _hold_written_ca(api_client)
    return api_client, describe_credentials(configuration, origin, sources)


def _without_empty_files(path: str | None) -> str | None:
    """``path``, a KUBECONFIG list, without its empty files (or of comments alone), which
    client-go reads as no configuration and the client refuses ("file is empty"): one such
    file among several (a ``~/.kube/config`` just touched) failed every write, where kubectl
    reads the others. An empty file alone stays, for the client to say so."""
    import yaml  # the kubernetes client depends on PyYAML

    def empty(name: str) -> bool:
        try:
            with open(os.path.expanduser(name), encoding="utf-8") as file:
                return yaml.safe_load(file) is None
        except Exception:  # missing, unreadable, no YAML: the client's to skip or to report
            return False

    names = (path or "").split(os.pathsep)
    if len(names) < 2:  # parsed once more for nothing: a megabyte's file took half a second
        return path
    kept = [name for name in names if name and not empty(name)]
    return os.pathsep.join(kept) if kept else path


def _hold_written_ca(api_client: Any) -> None:
    """A CA the client wrote to a temporary file (a kubeconfig's ``certificate-authority-data``)
    is held in memory by its pool, and so are a client certificate and key behind a proxy:
    the client deletes the files at exit, before ``logging.shutdown()`` flushes the handler,
    and urllib3 reads them at each new connection."""
    kube_config: Any = sys.modules.get("kubernetes.config.kube_config")
    written = getattr(kube_config, "_temp_files", None) or {}
    options = api_client.rest_client.pool_manager.connection_pool_kw
    path = options.get("ca_certs")
    if path and not options.get("ca_cert_data") and path in written.values():
        with contextlib.suppress(OSError, UnicodeDecodeError), open(path, encoding="ascii") as file:
            options["ca_cert_data"], options["ca_certs"] = file.read(), None
    import ssl

    import urllib3
    from urllib3.util.ssl_ import create_urllib3_context, resolve_cert_reqs

    # the client certificate, too, on the client's own path (a proxy: the channel keeps its
    # own copies); urllib3 loads one from files only, but keeps a given context's
    if type(api_client.rest_client.pool_manager) is not urllib3.PoolManager and {
        options.get("cert_file"),
        options.get("key_file"),
    } <= set(written.values()):
        with contextlib.suppress(OSError, ssl.SSLError):
            context = create_urllib3_context(cert_reqs=resolve_cert_reqs(options.get("cert_reqs")))
            context.load_cert_chain(options["cert_file"], options.get("key_file"))
            if not options.get("ca_certs") and not options.get("ca_cert_data"):
                context.load_default_certs()  # as urllib3 does for a context of its own
            options.update(ssl_context=context, cert_file=None, key_file=None)


def clean_up_at_exit() -> None:
    """At exit, delete the temporary files the client wrote since its own clean-up at exit:
    a client first built by the exit flush left a kubeconfig's ``-data``, a private key
    among them, behind for good."""
    kube_config: Any = sys.modules.get("kubernetes.config.kube_config")
    clean_up = getattr(kube_config, "_cleanup_temp_files", None)
    if callable(clean_up) and _process.EXITING.is_set():
        clean_up()


RENEW_SECONDS = 60.0
"""How old a token read from a kubeconfig's ``tokenFile`` gets before it is read again
(client-go's period)."""


class _Renewal(_process.Locked):
    """The refresh hook of a configuration the sink built (a plain callable to the client).

    Its token comes from a copy loaded as the configuration was, which the client's own hook
    refreshes (an exec plugin's token past its expiry, the in-cluster token each minute). As
    client-go does, the copy is loaded anew after a 401 (:func:`refused`; a plugin's once a
    minute at most), while it holds no token (an exec plugin that failed: raised, for the
    writer to retry, not sent without credentials), and when a ``tokenFile``'s token is
    :data:`RENEW_SECONDS` old. A load that fails keeps the token there was. One writer loads
    at a time, as in client-go's exec authenticator: the writers that found a plugin's token
    expired together each ran the plugin (eight processes, or eight prompts of an
    interactive one), where the first's token does for all.
    """

    def __init__(
        self,
        load: Callable[[Any], None],
        configuration: Any,
        origin: str,
        periodic: bool,
        monotonic: Callable[[], float],
    ) -> None:
        super().__init__()
        self._load = load
        self._origin = origin
        self._periodic = periodic
        self._monotonic = monotonic
        self._copy = SimpleNamespace(
            api_key=dict(configuration.api_key),
            refresh_api_key_hook=configuration.refresh_api_key_hook,
        )
        self._loaded_at = monotonic()
        self._stale = False
        self._refused_at = float("-inf")
        self.costly = False
        """Loading runs a plugin (``exec``, an auth provider), not only reads a file."""
        self.plugin: Any = {}
        """The kubeconfig user's ``exec`` section, if any."""

    def _after_fork_in_child(self) -> None:
        # reentrant: a signal handler's write on the thread it interrupted (an exit's flush
        # running the plugin) reads the credentials inside that read, and would wait for it
        self._lock = threading.RLock()

    def __deepcopy__(self, _memo: dict[int, Any]) -> _Renewal:
        # a copy of the configuration (Configuration.set_default's) shares it: its lock cannot
        # be copied, and one load serves both
        return self

    def renew(self) -> None:
        """Load the credentials again before the next request; for costly ones, if no 401
        did in the last :data:`RENEW_SECONDS`: a server that refuses them all (a role
        mapping removed) must not run an exec plugin per request."""
        now = self._monotonic()
        if not self.costly or now - self._refused_at >= RENEW_SECONDS:
            self._refused_at, self._stale = now, True

    def __call__(self, configuration: Any) -> None:
        with self._lock:  # on a writer, counted as waiting for credentials (_official)
            copy = self._copy
            due = self._periodic and self._monotonic() - self._loaded_at >= RENEW_SECONDS
            if self._stale or due or not _token(copy):
                copy = self._reload(copy)
            elif copy.refresh_api_key_hook is not None:
                copy.refresh_api_key_hook(copy)
        # an empty token keeps the client calling this hook
        configuration.api_key = {"BearerToken": _token(copy)}

    def _reload(self, old: Any) -> Any:
        self._stale = False
        self._loaded_at = self._monotonic()
        fresh = SimpleNamespace(api_key={}, refresh_api_key_hook=None)
        try:
            self._load(fresh)
        except Exception:
            if not _token(old):
                raise
            return old
        if not _token(fresh):
            if _token(old):
                return old
            raise _errors.NoCredentialsError(
                f"no credentials: the exec plugin of {self._origin} gave no token (the "
                f"Kubernetes client's error says why){_not_installed(self.plugin)}; it runs "
                "again at the next try"
            )
        self._copy = fresh
        return fresh


def _not_installed(plugin: Any) -> str:
    """What kubectl adds when an exec plugin's command is on no path: its ``installHint``
    (the client says only "No such file or directory")."""
    command = str(plugin.get("command") or "")
    if not command or os.sep in command or shutil.which(command):
        return ""  # a path is the kubeconfig's to resolve, and the client names it
    hint = " ".join(str(plugin.get("installHint") or "").split())
    return f"; its command {command!r} is on no directory of PATH" + (f" ({hint})" if hint else "")


def refused(configuration: Any) -> None:
    """The server answered 401: a configuration the sink built loads its token again before
    the next request (as client-go does); another's is left as it is."""
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if isinstance(hook, _Renewal):
        hook.renew()


def _token(configuration: Any) -> str:
    api_key = getattr(configuration, "api_key", None) or {}
    return str(api_key.get("BearerToken") or api_key.get("authorization") or "")


def describe_credentials(configuration: Any, origin: str, sources: list[str] | None = None) -> str:
    """The kind of credentials ``configuration`` sends, from ``origin``; never their value."""
    kinds = []
    if getattr(configuration, "cert_file", None):
        kinds.append("a client certificate")
    # a token loaded again (_Renewal) may come later: an exec plugin that failed so far
    renewed = isinstance(getattr(configuration, "refresh_api_key_hook", None), _Renewal)
    has_token = renewed or bool(_token(configuration))
    if has_token:
        kinds += [s for s in sources or ["a bearer token"] if "certificate" not in s]
    if getattr(configuration, "username", None) and not has_token:
        kinds.append("a user name and password")
    if not kinds:
        return f"no credentials ({origin})"
    return f"{' and '.join(dict.fromkeys(kinds))}, from {origin}"


def _kubeconfig_origin(
    path: str | None, context: str | None
) -> tuple[str, str | None, dict[str, Any]]:
    """The kubeconfig's name, context and user; the context (None: the client's choice); its
    user's entry."""
    shown = path or os.path.join("~", ".kube", "config")
    try:
        from kubernetes.config import kube_config

        merging: Any = kube_config.KubeConfigMerger
        merger = merging(shown)  # it expands ~ itself
        merged: dict[str, Any] = merger.config.value
        # of several files, the first to name a current context wins, as for every key in
        # kubectl and client-go (the client takes the last's)
        named = (merger.config_files[file].get("current-context") for file in merger.paths)
        name = context or next(filter(None, named), None)
        user_name = _plain(_entry(merged, "contexts", name).get("context")).get("user")
        entry = _entry(merged, "users", user_name)
    except Exception:  # only a description: the client loads it, and says what is wrong
        return f"the kubeconfig {shown}", context, {}
    # a user it lacks means no credentials, to the client as to client-go: say why
    lacks = ", which it does not have" if user_name and not entry else ""
    origin = f"the kubeconfig {shown} (context {name!r}, user {user_name!r}{lacks})"
    return origin, name, _plain(entry.get("user"))


def _plain(node: Any) -> dict[str, Any]:
    # the client wraps the entries of lists in ConfigNodes
    value = getattr(node, "value", node)
    return value if isinstance(value, dict) else {}


def _entry(config: dict[str, Any], section: str, name: object) -> dict[str, Any]:
    entries = (_plain(entry) for entry in config.get(section) or ())
    return next((entry for entry in entries if entry.get("name") == name), {})

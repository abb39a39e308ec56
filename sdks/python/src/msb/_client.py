"""The client, the sandbox builder, live sandbox handles and exec."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from ._errors import MsbError
from ._models import (
    CapacityReport,
    CreateSandboxRequest,
    DrainRequest,
    ExecRequest,
    HistoryResponse,
    KillRequest,
    MetricsReport,
    RootfsSource,
    SandboxConfig,
    SandboxInfo,
    SessionExec,
    StopRequest,
    TerminalSize,
    VolumeMount,
    WaitResponse,
)
from ._transport import Transport, default_home

# What a sandbox started without a command runs: nothing, until it is stopped (exec into it).
IDLE_COMMAND = ["sh", "-c", "while :; do sleep 3600; done"]

Seconds = Union[int, float]
When = Union[datetime, Seconds]


def _path(name: str, *rest: str) -> str:
    return "/".join(["/v1/sandboxes", urllib.parse.quote(name, safe="")] + list(rest))


def _epoch_ms(when: When) -> int:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return int(when.timestamp() * 1000)
    return int(when * 1000)


class Client:
    """A connection to the msbd of an MSB_HOME (default ``$MSB_HOME`` or ``~/.msb``), or to a
    given socket. msbd is started on first use if it is not running (for a home; a bare socket
    is only connected to)."""

    def __init__(self, home: Union[str, Path, None] = None, *, socket: Union[str, Path, None] = None,
                 msbd: Optional[str] = None) -> None:
        if socket is not None and home is None:
            self.home: Optional[Path] = None
            socket_path = Path(socket)
        else:
            self.home = Path(home) if home is not None else default_home()
            socket_path = Path(socket) if socket is not None else self.home / "msbd.sock"
        self._transport = Transport(self.home, socket_path, msbd)

    # -- sandboxes -------------------------------------------------------------------------

    def sandbox(self, name: str = "") -> "SandboxBuilder":
        """A builder for a new sandbox; an empty name lets msbd pick one (and makes it ephemeral)."""
        return SandboxBuilder(self, name)

    def get(self, name: str) -> "Sandbox":
        """The sandbox named ``name`` (NotFoundError if there is none)."""
        return Sandbox(self, SandboxInfo.from_json(self._transport.request("GET", _path(name))))

    def list(self, all: bool = True) -> List["Sandbox"]:
        """Every sandbox (``all=False``: the running ones), as live handles."""
        path = "/v1/sandboxes" + ("?all=true" if all else "")
        return [Sandbox(self, SandboxInfo.from_json(i)) for i in self._transport.request("GET", path)]

    def remove(self, name: str, force: bool = False) -> None:
        """Removes a sandbox that is not running (``force``: kills it first)."""
        self._transport.request("DELETE", _path(name) + ("?force=true" if force else ""))

    # -- metrics and capacity --------------------------------------------------------------

    def all_sandbox_metrics(self, include_ended: bool = False) -> Dict[str, MetricsReport]:
        """The latest sample of every running sandbox (``include_ended``: and ended runs')."""
        path = "/v1/metrics" + ("?all=true" if include_ended else "")
        reports = [MetricsReport.from_json(r) for r in self._transport.request("GET", path)]
        return {r.name: r for r in reports}

    def capacity(self) -> CapacityReport:
        """The host's CPUs, memory and disk against what sandboxes were given and use."""
        return CapacityReport.from_json(self._transport.request("GET", "/v1/capacity"))

    def metrics_stream(self, interval: Seconds = 1.0, name: Optional[str] = None
                       ) -> Iterator[MetricsReport]:
        """Every running sandbox's report (or ``name``'s) each ``interval`` seconds, for ever."""
        query = {"interval_ms": int(interval * 1000)}
        if name is not None:
            query["name"] = name
        path = "/v1/metrics/stream?" + urllib.parse.urlencode(query)
        for line in self._transport.stream_lines(path, operation="metrics"):
            yield MetricsReport.from_json(line)

    def fleet_history(self, since: When, until: Optional[When] = None,
                      step: Optional[Seconds] = None) -> HistoryResponse:
        return HistoryResponse.from_json(self._transport.request(
            "GET", "/v1/history/fleet?" + _window(since, until, step)))

    def _create(self, request: CreateSandboxRequest) -> "Sandbox":
        info = self._transport.request("POST", "/v1/sandboxes", request.to_json(), operation="create")
        return Sandbox(self, SandboxInfo.from_json(info))


def _window(since: When, until: Optional[When], step: Optional[Seconds]) -> str:
    query = {"since_ms": _epoch_ms(since)}
    if until is not None:
        query["until_ms"] = _epoch_ms(until)
    if step is not None:
        query["step_ms"] = int(step * 1000)
    return urllib.parse.urlencode(query)


class SandboxBuilder:
    """What a new sandbox is to be; ends with :meth:`create`, :meth:`start` or :meth:`run`."""

    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self._config = SandboxConfig(
            name=name, command=[], env=[], volumes=[], labels={},
            rootfs=RootfsSource(kind="default"), ephemeral=False)
        self._ephemeral: Optional[bool] = None

    def command(self, argv: Sequence[str]) -> "SandboxBuilder":
        """The workload (default for :meth:`start`: idle until stopped; for :meth:`run`: required)."""
        self._config.command = list(argv)
        return self

    def root(self, host_directory: Union[str, Path, None]) -> "SandboxBuilder":
        """A host directory as the root (read-write); ``None``: msb's default root."""
        self._config.rootfs = (RootfsSource(kind="default") if host_directory is None
                               else RootfsSource(kind="bind", path=str(host_directory)))
        return self

    def cpus(self, cores: float) -> "SandboxBuilder":
        self._config.cpus = float(cores)
        return self

    def memory_mib(self, mib: int) -> "SandboxBuilder":
        self._config.memory_mib = int(mib)
        return self

    def env(self, values: Optional[Mapping[str, str]] = None, **more: str) -> "SandboxBuilder":
        for key, value in {**(values or {}), **more}.items():
            self._config.env.append((key, value))
        return self

    def workdir(self, path: str) -> "SandboxBuilder":
        self._config.workdir = path
        return self

    def mount(self, host: Union[str, Path], guest: str, readonly: bool = False,
              quota_mib: Optional[int] = None) -> "SandboxBuilder":
        """A host path at ``guest`` in the sandbox. A directory is served by msb's file server,
        whose writes count against ``quota_mib`` (msbd's default when ``None``)."""
        self._config.volumes.append(VolumeMount(host=str(host), guest=guest, readonly=readonly,
                                                quota_mib=quota_mib))
        return self

    def volume(self, name: str, guest: str, readonly: bool = False) -> "SandboxBuilder":
        """The named volume ``name`` (``msb volume create``) at ``guest``."""
        self._config.volumes.append(VolumeMount(volume=name, guest=guest, readonly=readonly))
        return self

    def publish(self, spec: str) -> "SandboxBuilder":
        """Publishes a port, ``[BIND_ADDR:]HOST_PORT[-END]:GUEST_PORT[-END][/udp|/tcp]`` as
        ``msb run -p`` takes it (the bind address defaults to 127.0.0.1)."""
        self._config.published_ports.append(spec)
        return self

    def net_rule(self, rule: str) -> "SandboxBuilder":
        """Appends an egress rule, ``allow|deny@CIDR[:tcp|udp[:PORTS]]`` (first match wins)."""
        self._config.net_rules.append(rule)
        return self

    def root_disk_mib(self, mib: int) -> "SandboxBuilder":
        """Size of the disk holding the writable root's changes (``msb run --root-disk``;
        default 4096 MiB, sparse): writes past it fail with ENOSPC."""
        self._config.root_disk_mib = mib
        return self

    def net_ring_frames(self, frames: int) -> "SandboxBuilder":
        """Frames each of the network's two rings holds (``--net-ring-frames``; default 1024)."""
        self._config.net_ring_frames = frames
        return self

    def no_network(self) -> "SandboxBuilder":
        """No network: the sandbox keeps only its loopback interface."""
        self._config.no_network = True
        return self

    def label(self, key: str, value: str) -> "SandboxBuilder":
        self._config.labels[key] = value
        return self

    def labels(self, labels: Mapping[str, str]) -> "SandboxBuilder":
        self._config.labels.update(labels)
        return self

    def idle_timeout(self, seconds: int) -> "SandboxBuilder":
        self._config.idle_timeout_secs = int(seconds)
        return self

    def max_duration(self, seconds: int) -> "SandboxBuilder":
        self._config.max_duration_secs = int(seconds)
        return self

    def ephemeral(self, ephemeral: bool = True) -> "SandboxBuilder":
        """Removed by the runtime when its run ends (the default for unnamed sandboxes)."""
        self._ephemeral = ephemeral
        return self

    def metrics_interval(self, seconds: Seconds) -> "SandboxBuilder":
        """Sampling interval (at least 0.1 s); 0 turns metrics off."""
        self._config.metrics_interval_ms = int(round(seconds * 1000))
        return self

    def config(self) -> SandboxConfig:
        """The configuration as it will be sent."""
        config = SandboxConfig.from_json(self._config.to_json())
        config.ephemeral = self._ephemeral if self._ephemeral is not None else not config.name
        return config

    def create(self) -> "Sandbox":
        """Creates the sandbox without starting it."""
        return self._client._create(CreateSandboxRequest(config=self.config(), start=False))

    def start(self) -> "Sandbox":
        """Creates and starts the sandbox; returns once its workload runs."""
        config = self.config()
        if not config.command:
            config.command = list(IDLE_COMMAND)
        return self._client._create(CreateSandboxRequest(config=config, start=True))

    def run(self) -> "RunResult":
        """Starts the sandbox with its command and waits for it to end."""
        if not self._config.command:
            raise ValueError("run() needs a command: .command([...])")
        sandbox = self.start()
        result = sandbox.wait()
        return RunResult(sandbox=sandbox, exit_code=result.exit_code, status=result.status,
                         termination_reason=result.termination_reason)


@dataclass
class RunResult:
    sandbox: "Sandbox"
    exit_code: Optional[int]
    status: str
    termination_reason: Optional[str]


@dataclass
class ExecResult:
    """A finished process: exit code (128 + signal when a signal ended it) and its output."""

    exit_code: int
    signal: Optional[int]
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False

    @property
    def text(self) -> str:
        """stdout as text."""
        return self.stdout.decode(errors="replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Sandbox:
    """A live handle on a sandbox: every call asks msbd, so it never goes stale. Used in
    ``with``, the sandbox is stopped at exit."""

    def __init__(self, client: Client, info: SandboxInfo) -> None:
        self._client = client
        self._transport = client._transport
        self.name = info.name
        self._info = info

    def __repr__(self) -> str:
        return f"Sandbox({self.name!r})"

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *_: Any) -> None:
        try:
            self.stop()
        except MsbError:
            pass

    @property
    def last_info(self) -> SandboxInfo:
        """What msbd said of the sandbox on the last call that told (no request)."""
        return self._info

    def inspect(self) -> SandboxInfo:
        self._info = SandboxInfo.from_json(self._transport.request("GET", _path(self.name)))
        return self._info

    def status(self) -> str:
        return self.inspect().status

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "Sandbox":
        self._info = SandboxInfo.from_json(self._transport.request("POST", _path(self.name, "start")))
        return self

    def stop(self, timeout: Optional[Seconds] = None, force: bool = False) -> "Sandbox":
        """SIGTERM, then SIGKILL after ``timeout`` seconds (default 10); ``force``: SIGKILL now."""
        request = StopRequest(force=force,
                              timeout_secs=None if timeout is None else int(round(timeout)))
        self._update(self._transport.request("POST", _path(self.name, "stop"), request.to_json()))
        return self

    def kill(self, signal: int = 9) -> "Sandbox":
        """Sends ``signal`` to the workload (SIGKILL, the default, takes the sandbox down)."""
        body = KillRequest(signal=int(signal)).to_json()
        self._update(self._transport.request("POST", _path(self.name, "kill"), body))
        return self

    def drain(self, timeout: Optional[Seconds] = None, stop_timeout: Optional[Seconds] = None
              ) -> "Sandbox":
        """No new exec sessions; waits for the running ones (at most ``timeout`` s), then stops."""
        request = DrainRequest(
            timeout_secs=None if timeout is None else int(round(timeout)),
            stop_timeout_secs=None if stop_timeout is None else int(round(stop_timeout)))
        self._update(self._transport.request("POST", _path(self.name, "drain"), request.to_json()))
        return self

    def wait(self) -> WaitResponse:
        """Blocks until the run ends; how it ended."""
        return WaitResponse.from_json(self._transport.request("POST", _path(self.name, "wait")))

    def remove(self, force: bool = False) -> None:
        self._client.remove(self.name, force=force)

    def _update(self, info: Any) -> None:
        # An ephemeral sandbox may be gone by the time the answer is written.
        if isinstance(info, dict):
            self._info = SandboxInfo.from_json(info)

    # -- exec ------------------------------------------------------------------------------

    def exec(self, argv: Sequence[str], *, stdin: Union[bytes, str, None] = None,
             env: Optional[Mapping[str, str]] = None, workdir: Optional[str] = None,
             timeout: Optional[Seconds] = None) -> ExecResult:
        """Runs ``argv`` to its end; its exit code and output (each cut at 16 MiB, flagged)."""
        if isinstance(stdin, str):
            stdin = stdin.encode()
        request = ExecRequest(
            argv=list(argv), env=list((env or {}).items()), workdir=workdir,
            stdin=None if stdin is None else base64.b64encode(stdin).decode(),
            timeout_ms=None if timeout is None else max(1, int(timeout * 1000)))
        answer = self._transport.request("POST", _path(self.name, "exec"), request.to_json())
        return ExecResult(
            exit_code=answer["exit_code"], signal=answer["signal"],
            stdout=base64.b64decode(answer["stdout"]), stderr=base64.b64decode(answer["stderr"]),
            stdout_truncated=answer["stdout_truncated"],
            stderr_truncated=answer["stderr_truncated"], timed_out=answer["timed_out"])

    def exec_stream(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
                    workdir: Optional[str] = None, stdin: bool = True,
                    pty: Optional[TerminalSize] = None) -> "Process":
        """Starts ``argv`` with stdin open; its output arrives as it is written (see Process)."""
        spec = SessionExec(argv=list(argv), env=list((env or {}).items()), workdir=workdir,
                           stdin=stdin, pty=pty)
        return Process._open(self._transport, self.name, {"exec": spec.to_json()})

    def attach(self) -> "Process":
        """Follows the main workload: its output from now on, its exit; stdin goes to it."""
        return Process._open(self._transport, self.name, {"attach": {}})

    # -- metrics ---------------------------------------------------------------------------

    def metrics(self) -> MetricsReport:
        """The latest sample (MetricsDisabledError, MetricsUnavailableError before the first)."""
        return MetricsReport.from_json(
            self._transport.request("GET", _path(self.name, "metrics"), operation="metrics"))

    def metrics_stream(self, interval: Seconds = 1.0) -> Iterator[MetricsReport]:
        """This sandbox's report every ``interval`` seconds while it runs."""
        return self._client.metrics_stream(interval, name=self.name)

    def metrics_history(self, since: When, until: Optional[When] = None,
                        step: Optional[Seconds] = None) -> HistoryResponse:
        """Stored samples from ``since`` (a datetime, or seconds since the epoch) to ``until``."""
        return HistoryResponse.from_json(self._transport.request(
            "GET", _path(self.name, "history") + "?" + _window(since, until, step)))


class Process:
    """A process started by :meth:`Sandbox.exec_stream` (or an attach): write to its stdin,
    iterate its output as ``(stream, bytes)`` chunks, :meth:`wait` for its exit code. Used in
    ``with``, closing it kills a process that is still running."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = sock.makefile("rb")
        self._lock = threading.Lock()
        self.pid: Optional[int] = None
        self.exit_code: Optional[int] = None
        self.signal: Optional[int] = None
        self._done = False

    @classmethod
    def _open(cls, transport: Transport, name: str, first: Dict[str, Any]) -> "Process":
        sock = transport.upgrade(_path(name, "session"), "msb-session-json")
        process = cls(sock)
        process._send(first)
        if "exec" in first:
            event = process._next_event()
            if event is None:
                raise MsbError("the session ended before the process started")
            if "started" in event:
                process.pid = event["started"]["pid"]
            else:
                process._done = True
                process.close()
                from ._errors import ConflictError, StartFailedError
                if "exec_failed" in event:
                    failure = event["exec_failed"]
                    code = {"not_found": 127, "permission_denied": 126}.get(failure["kind"], 125)
                    raise StartFailedError(failure["message"], kind="start_failed", exit_code=code)
                raise ConflictError(event.get("error", str(event)))
        return process

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _send(self, message: Dict[str, Any]) -> None:
        with self._lock:
            self._sock.sendall(json.dumps(message).encode() + b"\n")

    def _next_event(self) -> Optional[Dict[str, Any]]:
        line = self._reader.readline()
        return json.loads(line) if line.strip() else None

    def write(self, data: Union[bytes, str]) -> None:
        if isinstance(data, str):
            data = data.encode()
        self._send({"stdin": base64.b64encode(data).decode()})

    def close_stdin(self) -> None:
        self._send({"stdin_eof": True})

    def resize(self, rows: int, cols: int) -> None:
        self._send({"resize": {"rows": rows, "cols": cols}})

    def send_signal(self, signal: int) -> None:
        self._send({"signal": int(signal)})

    def __iter__(self) -> Iterator["tuple[str, bytes]"]:
        """Output chunks as ``(stream, data)``, ``stream`` being ``"stdout"`` or ``"stderr"``,
        until the process ends."""
        while not self._done:
            event = self._next_event()
            if event is None:
                self._done = True
                raise MsbError("the session ended without an exit status")
            if "output" in event:
                yield event["output"]["stream"], base64.b64decode(event["output"]["data"])
            elif "exited" in event:
                self.signal = event["exited"]["signal"]
                code = event["exited"]["code"]
                self.exit_code = code if code is not None else 128 + (self.signal or 0)
                self._done = True
            elif "error" in event:
                self._done = True
                raise MsbError(event["error"])

    def wait(self) -> ExecResult:
        """Reads to the end; the exit code and the output not yet iterated."""
        out: Dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        for stream, data in self:
            out[stream] += data
        assert self.exit_code is not None
        return ExecResult(exit_code=self.exit_code, signal=self.signal, stdout=bytes(out["stdout"]),
                          stderr=bytes(out["stderr"]))

    def close(self) -> None:
        """Hangs up (a process still running is killed)."""
        try:
            self._reader.close()
            self._sock.close()
        except OSError:
            pass

"""The SDK against a real msbd and real sandboxes."""

import os
import signal
import threading
import time
from datetime import datetime, timezone

import pytest

import msb
from conftest import cli

MIB = 1 << 20


def eventually(check, what, limit=20.0):
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_builder_options_land_in_inspect(client, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "scratch").mkdir()
    sandbox = (client.sandbox("py-options").cpus(0.5).memory_mib(256).env(GREETING="hi")
               .workdir("/tmp").mount(tmp_path / "data", "/data", readonly=True)
               .mount(tmp_path / "scratch", "/scratch", quota_mib=64)
               .label("team", "sdk").idle_timeout(600).max_duration(900).metrics_interval(0.5)
               .start())
    config = sandbox.inspect().config
    assert (config.cpus, config.memory_mib, config.workdir) == (0.5, 256, "/tmp")
    assert ("GREETING", "hi") in config.env
    assert config.labels == {"team": "sdk"}
    assert (config.idle_timeout_secs, config.max_duration_secs) == (600, 900)
    assert config.metrics_interval_ms == 500
    assert [(v.host, v.guest, v.readonly, v.quota_mib, v.volume) for v in config.volumes] == [
        (str(tmp_path / "data"), "/data", True, None, None),
        (str(tmp_path / "scratch"), "/scratch", False, 64, None)]
    assert config.ephemeral is False
    assert sandbox.exec(["sh", "-c", "echo $GREETING; pwd"]).text == "hi\n/tmp\n"
    sandbox.remove(force=True)
    with pytest.raises(msb.NotFoundError):
        client.get("py-options")


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_port(port):
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.settimeout(3)
            chunks = []
            while True:
                data = s.recv(4096)
                if not data:
                    return b"".join(chunks)
                chunks.append(data)
    except OSError:
        return b""


def test_published_port_rules_and_no_network(client):
    port = _free_port()
    web = (client.sandbox("py-web")
           .command(["sh", "-c", "while true; do echo py-published | nc -l -p 8080; done"])
           .publish(f"{port}:8080").net_rule("deny@10.0.0.0/8")
           .net_ring_frames(256).root_disk_mib(256).start())
    config = web.inspect().config
    assert (config.published_ports, config.net_rules) == ([f"{port}:8080"], ["deny@10.0.0.0/8"])
    assert (config.net_ring_frames, config.root_disk_mib) == (256, 256)
    eventually(lambda: b"py-published" in _read_port(port), "the published port to answer")
    web.stop(timeout=1)
    with client.sandbox("py-offline").no_network().start() as offline:
        assert offline.exec(["ls", "/sys/class/net"]).text.split() == ["lo"]
    with pytest.raises(msb.InvalidArgumentError, match="published"):
        client.sandbox("py-badport").publish("99999:80").create()
    with pytest.raises(msb.NotFoundError):
        client.get("py-badport")


def test_unnamed_sandboxes_are_ephemeral_and_run_returns_the_exit_code(client):
    builder = client.sandbox().command(["sh", "-c", "exit 4"])
    assert builder.config().ephemeral is True
    result = builder.run()
    assert result.exit_code == 4
    assert result.sandbox.name not in [s.name for s in client.list()]


def test_exec_output_and_exit_codes(client):
    with client.sandbox("py-exec").start() as sandbox:
        result = sandbox.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (result.stdout, result.stderr, result.exit_code) == (b"out\n", b"err\n", 3)
        assert sandbox.exec(["cat"], stdin=b"\x00\x01binary").stdout == b"\x00\x01binary"
        slow = sandbox.exec(["sleep", "30"], timeout=0.3)
        assert slow.timed_out and slow.signal == 9 and slow.exit_code == 137
        with pytest.raises(msb.StartFailedError) as failed:
            sandbox.exec(["no-such-command"])
        assert failed.value.exit_code == 127
        with pytest.raises(msb.InvalidArgumentError):
            sandbox.exec([])

        with sandbox.exec_stream(["cat"]) as process:
            assert process.pid and process.pid > 1
            process.write(b"ping\n")
            stream, data = next(iter(process))
            assert (stream, data) == ("stdout", b"ping\n")
            process.close_stdin()
            assert process.wait().exit_code == 0
        with sandbox.exec_stream(["sh", "-c", "echo a; echo b >&2; exit 5"], stdin=False) as p:
            result = p.wait()
            assert (result.stdout, result.stderr, result.exit_code) == (b"a\n", b"b\n", 5)
        with pytest.raises(msb.StartFailedError):
            sandbox.exec_stream(["no-such-command"])
    assert client.get("py-exec").status() == "Stopped", "with stops the sandbox"
    client.remove("py-exec")


def test_stop_kill_drain_wait_on_handles_from_list(client):
    for name in ("py-stop", "py-kill", "py-drain", "py-wait"):
        client.sandbox(name).start()
    handles = {s.name: s for s in client.list(all=False)}
    assert {"py-stop", "py-kill", "py-drain", "py-wait"} <= set(handles)

    assert handles["py-stop"].stop(timeout=1).last_info.status == "Stopped"
    assert handles["py-stop"].inspect().runs[-1].termination_reason == "ShutdownRequested"

    handles["py-kill"].kill(signal.SIGKILL)
    assert handles["py-kill"].status() == "Stopped"
    assert handles["py-kill"].inspect().runs[-1].end_cause == "signal"

    drained = handles["py-drain"]
    process = drained.exec_stream(["sh", "-c", "sleep 2; echo done"], stdin=False)
    thread = threading.Thread(target=drained.drain)
    thread.start()
    eventually(lambda: drained.status() == "Draining", "Draining")
    with pytest.raises(msb.ConflictError) as refused:
        drained.exec(["true"])
    assert "draining" in refused.value.message
    result = process.wait()
    assert (result.stdout, result.exit_code) == (b"done\n", 0)
    thread.join(30)
    assert drained.inspect().runs[-1].termination_reason == "DrainRequested"

    waiter = handles["py-wait"]
    ended = {}
    thread = threading.Thread(target=lambda: ended.update(r=waiter.wait()))
    thread.start()
    time.sleep(0.5)
    waiter.kill(signal.SIGTERM)
    thread.join(30)
    assert ended["r"].status == "Stopped"
    assert ended["r"].exit_code == 128 + signal.SIGTERM
    for name in handles:
        if name.startswith("py-"):
            client.remove(name, force=True)


def test_a_dead_supervisor_does_not_hang_wait(client):
    sandbox = client.sandbox("py-crash").start()
    supervisor = sandbox.inspect().runs[-1].supervisor_pid
    assert supervisor
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=sandbox.wait()), daemon=True)
    thread.start()
    time.sleep(0.3)
    os.kill(supervisor, signal.SIGKILL)
    thread.join(30)
    assert not thread.is_alive(), "wait returned"
    assert result["r"].status in ("Crashed", "Stopped")
    sandbox.remove(force=True)


def test_metrics_fields_and_types(client, document):
    sandbox = client.sandbox("py-metrics").metrics_interval(0.2).start()
    report = eventually(lambda: _metrics(sandbox), "a first sample")
    schema = document["components"]["schemas"]["MetricsReport"]["properties"]
    as_json = report.to_json()
    assert set(as_json) == set(schema)
    for field, prop in schema.items():
        value = getattr(report, field)
        types = prop.get("type")
        types = types if isinstance(types, list) else [types]
        if value is None:
            assert "null" in types, field
        elif "integer" in types:
            assert isinstance(value, int) and not isinstance(value, bool), field
        elif "number" in types:
            assert isinstance(value, (int, float)), field
        elif "string" in types:
            assert isinstance(value, str), field
    assert report.name == "py-metrics" and report.state == "running"
    assert report.memory_limit_bytes == 512 * MIB

    stream = sandbox.metrics_stream(interval=0.2)
    first, second = next(stream), next(stream)
    assert first.name == second.name == "py-metrics"
    assert "py-metrics" in client.all_sandbox_metrics()

    with pytest.raises(msb.MetricsDisabledError):
        client.sandbox("py-nometrics").metrics_interval(0).start().metrics()
    client.remove("py-nometrics", force=True)
    with pytest.raises(msb.NotFoundError):
        client.get("py-none").metrics()


def _metrics(sandbox):
    try:
        return sandbox.metrics()
    except msb.MetricsUnavailableError:
        return None


def same_points(a, b):
    """Equal point lists, numbers equal to 1e-9 relative (msbd's rates are float sums whose last
    bit can differ between two reads of the same samples)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.keys() != y.keys():
            return False
        for key, u in x.items():
            v = y[key]
            if isinstance(u, (int, float)) and isinstance(v, (int, float)):
                if abs(u - v) > 1e-9 * max(abs(u), abs(v), 1.0):
                    return False
            elif u != v:
                return False
    return True


def test_history_returns_the_samples_the_cli_returns(client, home):
    sandbox = client.get("py-metrics")
    # A window that ended seconds ago: every sample in it is stored by now.
    since = int(time.time()) - 60
    time.sleep(3)
    until = int(time.time()) - 2
    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    import json
    # A sample of the window's last seconds may still be on its way to the store on a busy
    # host (the writer commits in batches): the two must agree once it is stored.
    for _ in range(10):
        history = sandbox.metrics_history(since, until, step=1)
        assert history.points, "samples in the window"
        printed = cli(home, "metrics", "py-metrics", "--since", iso(since), "--until",
                      iso(until), "--step", "1s", "--format", "json")
        try:
            points = json.loads(printed)
        except ValueError:
            points = [json.loads(line) for line in printed.splitlines() if line.strip()]
        if same_points(points, history.points):
            break
        time.sleep(1)
    assert same_points(points, history.points), (points, history.points)
    sandbox.remove(force=True)


def test_capacity_reflects_a_sandbox_of_256_mib(client):
    before = client.capacity()
    sandbox = client.sandbox("py-capacity").memory_mib(256).start()
    after = client.capacity()
    assert after.memory_committed_bytes - before.memory_committed_bytes == 256 * MIB
    # The headroom is measured: it appears with the sandbox's first sample.
    eventually(lambda: _metrics(sandbox), "a first sample")
    after = client.capacity()
    headroom = {h.name: h for h in after.sandboxes}["py-capacity"]
    assert headroom.memory_limit_bytes == 256 * MIB
    assert after.host_cpus >= 1 and after.host_memory_bytes
    sandbox.remove(force=True)


def test_errors_are_typed_and_carry_the_message(client, home):
    client.sandbox("py-taken").create()
    with pytest.raises(msb.AlreadyExistsError) as taken:
        client.sandbox("py-taken").create()
    assert "py-taken" in taken.value.message
    with pytest.raises(msb.InvalidArgumentError) as invalid:
        client.sandbox("py-bad").memory_mib(1).create()
    assert "memory" in invalid.value.message
    with pytest.raises(msb.ConflictError):
        client.get("py-taken").kill(15)
    client.remove("py-taken")
    with pytest.raises(msb.DaemonUnreachableError):
        msb.Client(socket=str(home / "no-such.sock")).list()

// The SDK against a real msbd and real sandboxes (needs root and MSB_BIN_DIR).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { isDeepStrictEqual } from "node:util";

import * as msb from "msb-sdk";

const MIB = 1024 * 1024;
const binDir = process.env.MSB_BIN_DIR ?? "/var/tmp/msb-target/msb-bin";
const runnable = process.getuid?.() === 0 && fs.existsSync(path.join(binDir, "msbd"));
const skip = runnable ? false : "needs root and msbd in MSB_BIN_DIR";
const document = JSON.parse(fs.readFileSync(path.join(process.env.MSB_REPO, "docs/openapi.json"), "utf8"));

let home;
let client;

before(() => {
  if (!runnable) return;
  home = fs.mkdtempSync("/tmp/msb-ts-");
  fs.chmodSync(home, 0o700);
  process.env.MSB_AGENTD ??= path.join(binDir, "msb-agentd");
  process.env.MSB_PROMETHEUS_ADDR = "127.0.0.1:0";
  client = new msb.Client({ home });
});

after(async () => {
  if (!runnable) return;
  for (const sandbox of await client.list()) await sandbox.remove({ force: true }).catch(() => {});
  cli("server", "stop");
  fs.rmSync(home, { recursive: true, force: true });
});

function cli(...args) {
  return execFileSync(path.join(binDir, "msb"), args, { env: { ...process.env, MSB_HOME: home }, encoding: "utf8" });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check, what, limitMs = 20_000) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

test("builder options land in inspect", { skip }, async () => {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), "msb-ts-data-"));
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "msb-ts-scratch-"));
  const sandbox = await client
    .sandbox("ts-options").cpus(0.5).memoryMib(256).env({ GREETING: "hi" }).workdir("/tmp")
    .mount(data, "/data", { readonly: true }).mount(scratch, "/scratch", { quotaMib: 64 }).label("team", "sdk").idleTimeout(600).maxDuration(900)
    .metricsIntervalMs(500).start();
  const { config } = await sandbox.inspect();
  assert.equal(config.cpus, 0.5);
  assert.equal(config.memory_mib, 256);
  assert.equal(config.workdir, "/tmp");
  assert.deepEqual(config.env, [["GREETING", "hi"]]);
  assert.deepEqual(config.labels, { team: "sdk" });
  assert.equal(config.idle_timeout_secs, 600);
  assert.equal(config.max_duration_secs, 900);
  assert.equal(config.metrics_interval_ms, 500);
  assert.deepEqual(
    config.volumes.map((v) => [v.host, v.guest, v.readonly, v.quota_mib ?? null, v.volume ?? null]),
    [[data, "/data", true, null, null], [scratch, "/scratch", false, 64, null]],
  );
  assert.equal(config.ephemeral, false);
  const result = await sandbox.exec(["sh", "-c", "echo $GREETING; pwd"]);
  assert.equal(result.stdout.toString(), "hi\n/tmp\n");
  await sandbox.remove({ force: true });
  await assert.rejects(client.get("ts-options"), msb.NotFoundError);
});

async function freePort() {
  const net = await import("node:net");
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function readPort(port) {
  const net = await import("node:net");
  return new Promise((resolve) => {
    const chunks = [];
    const socket = net.connect(port, "127.0.0.1");
    socket.setTimeout(3000, () => socket.destroy());
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("error", () => resolve(""));
    socket.on("close", () => resolve(Buffer.concat(chunks).toString()));
  });
}

test("published port, egress rules and no network", { skip }, async () => {
  const port = await freePort();
  const web = await client
    .sandbox("ts-web").command(["sh", "-c", "while true; do echo ts-published | nc -l -p 8080; done"])
    .publish(`${port}:8080`).netRule("deny@10.0.0.0/8").netRingFrames(256).rootDiskMib(256).start();
  const { config } = await web.inspect();
  assert.deepEqual([config.net_ring_frames, config.root_disk_mib], [256, 256]);
  assert.deepEqual(config.published_ports, [`${port}:8080`]);
  assert.deepEqual(config.net_rules, ["deny@10.0.0.0/8"]);
  await eventually(async () => (await readPort(port)).includes("ts-published"), "the published port to answer");
  await web.stop({ timeoutSecs: 1 });
  const offline = await client.sandbox("ts-offline").noNetwork().start();
  assert.deepEqual((await offline.exec(["ls", "/sys/class/net"])).stdout.toString().split(/\s+/).filter(Boolean), ["lo"]);
  await offline.stop({ timeoutSecs: 1 });
  await assert.rejects(
    client.sandbox("ts-badport").publish("99999:80").create(),
    (e) => e instanceof msb.InvalidArgumentError && e.message.includes("published"),
  );
  await assert.rejects(client.get("ts-badport"), msb.NotFoundError);
});

test("unnamed sandboxes are ephemeral; run returns the exit code", { skip }, async () => {
  const builder = client.sandbox().command(["sh", "-c", "exit 4"]);
  assert.equal(builder.config().ephemeral, true);
  const { sandbox, result } = await builder.run();
  assert.equal(result.exit_code, 4);
  assert.ok(!(await client.list()).some((s) => s.name === sandbox.name));
});

test("exec output and exit codes, buffered and streaming", { skip }, async () => {
  const sandbox = await client.sandbox("ts-exec").start();
  const result = await sandbox.exec(["sh", "-c", "echo out; echo err >&2; exit 3"]);
  assert.equal(result.stdout.toString(), "out\n");
  assert.equal(result.stderr.toString(), "err\n");
  assert.equal(result.exitCode, 3);
  assert.deepEqual((await sandbox.exec(["cat"], { stdin: Buffer.from([0, 1, 2]) })).stdout, Buffer.from([0, 1, 2]));
  const slow = await sandbox.exec(["sleep", "30"], { timeoutMs: 300 });
  assert.equal(slow.timedOut, true);
  assert.equal(slow.exitCode, 137);
  await assert.rejects(sandbox.exec(["no-such-command"]), (e) => e instanceof msb.StartFailedError && e.exitCode === 127);
  await assert.rejects(sandbox.exec([]), msb.InvalidArgumentError);

  const cat = await sandbox.execStream(["cat"]);
  assert.ok(cat.pid > 1);
  cat.write("ping\n");
  const iterator = cat[Symbol.asyncIterator]();
  const first = await iterator.next();
  assert.equal(first.value.stream, "stdout");
  assert.equal(first.value.data.toString(), "ping\n");
  cat.closeStdin();
  assert.equal((await cat.wait()).exitCode, 0);
  const both = await sandbox.execStream(["sh", "-c", "echo a; echo b >&2; exit 5"], { stdin: false });
  const ended = await both.wait();
  assert.equal(ended.stdout.toString() + ended.stderr.toString() + ended.exitCode, "a\nb\n5");
  await assert.rejects(sandbox.execStream(["no-such-command"]), msb.StartFailedError);
  await sandbox.remove({ force: true });
});

test("stop, kill, drain and wait on handles from list", { skip }, async () => {
  for (const name of ["ts-stop", "ts-kill", "ts-drain", "ts-wait"]) await client.sandbox(name).start();
  const handles = Object.fromEntries((await client.list({ all: false })).map((s) => [s.name, s]));
  assert.equal((await handles["ts-stop"].stop({ timeoutSecs: 1 })).lastInfo.status, "Stopped");
  assert.equal((await handles["ts-stop"].inspect()).runs.at(-1).termination_reason, "ShutdownRequested");
  await handles["ts-kill"].kill(9);
  assert.equal(await handles["ts-kill"].status(), "Stopped");

  const drained = handles["ts-drain"];
  const process = await drained.execStream(["sh", "-c", "sleep 2; echo done"], { stdin: false });
  const draining = drained.drain();
  await eventually(async () => (await drained.status()) === "Draining", "Draining");
  await assert.rejects(drained.exec(["true"]), (e) => e instanceof msb.ConflictError && e.message.includes("draining"));
  const result = await process.wait();
  assert.equal(result.stdout.toString(), "done\n");
  await draining;
  assert.equal((await drained.inspect()).runs.at(-1).termination_reason, "DrainRequested");

  const waiting = handles["ts-wait"].wait();
  await sleep(500);
  await handles["ts-wait"].kill(15);
  const ended = await waiting;
  assert.equal(ended.status, "Stopped");
  assert.equal(ended.exit_code, 128 + 15);
  for (const name of Object.keys(handles)) if (name.startsWith("ts-")) await client.remove(name, { force: true });
});

test("a dead supervisor does not hang wait", { skip }, async () => {
  const sandbox = await client.sandbox("ts-crash").start();
  const supervisor = (await sandbox.inspect()).runs.at(-1).supervisor_pid;
  const waiting = sandbox.wait();
  await sleep(300);
  process.kill(supervisor, "SIGKILL");
  const ended = await Promise.race([waiting, sleep(30_000).then(() => "hung")]);
  assert.notEqual(ended, "hung");
  assert.ok(["Crashed", "Stopped"].includes(ended.status));
  await sandbox.remove({ force: true });
});

test("metrics: every field with its type; stream; all sandboxes; disabled", { skip }, async () => {
  const sandbox = await client.sandbox("ts-metrics").metricsIntervalMs(200).start();
  const report = await eventually(() => sandbox.metrics().catch((e) => {
    if (e instanceof msb.MetricsUnavailableError) return null;
    throw e;
  }), "a first sample");
  const schema = document.components.schemas.MetricsReport.properties;
  assert.deepEqual(new Set(Object.keys(report)), new Set(Object.keys(schema)));
  for (const [field, prop] of Object.entries(schema)) {
    const types = [prop.type].flat();
    const value = report[field];
    if (value === null) assert.ok(types.includes("null"), field);
    else if (types.includes("integer")) assert.ok(Number.isInteger(value), field);
    else if (types.includes("number")) assert.equal(typeof value, "number", field);
    else if (types.includes("string")) assert.equal(typeof value, "string", field);
  }
  assert.equal(report.memory_limit_bytes, 512 * MIB);
  let seen = 0;
  for await (const line of sandbox.metricsStream(200)) {
    assert.equal(line.name, "ts-metrics");
    if (++seen === 2) break;
  }
  assert.ok("ts-metrics" in (await client.allSandboxMetrics()));
  const off = await client.sandbox("ts-nometrics").metricsIntervalMs(0).start();
  await assert.rejects(off.metrics(), msb.MetricsDisabledError);
  await off.remove({ force: true });
});

// Equal point lists, numbers equal to 1e-9 relative (msbd's rates are float sums whose last bit
// can differ between two reads of the same samples).
function samePoints(a, b) {
  if (a.length !== b.length) return false;
  return a.every((x, i) => {
    const y = b[i];
    const keys = Object.keys(x).sort();
    if (!isDeepStrictEqual(keys, Object.keys(y).sort())) return false;
    return keys.every((key) => {
      const [u, v] = [x[key], y[key]];
      if (typeof u === "number" && typeof v === "number") {
        return Math.abs(u - v) <= 1e-9 * Math.max(Math.abs(u), Math.abs(v), 1);
      }
      return isDeepStrictEqual(u, v);
    });
  });
}

test("history returns the samples the CLI returns", { skip }, async () => {
  // A window that ended seconds ago: every sample in it is stored by now.
  const since = Math.floor(Date.now() / 1000) - 60;
  await sleep(3000);
  const until = Math.floor(Date.now() / 1000) - 2;
  const sandbox = await client.get("ts-metrics");
  const iso = (t) => new Date(t * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  // A sample of the window's last seconds may still be on its way to the store on a busy host
  // (the writer commits in batches): the two must agree once it is stored.
  let history;
  let points;
  for (let attempt = 0; attempt < 10; attempt++) {
    history = await sandbox.metricsHistory(since * 1000, until * 1000, 1000);
    assert.ok(history.points.length > 0);
    const printed = cli("metrics", "ts-metrics", "--since", iso(since), "--until", iso(until), "--step", "1s", "--format", "json");
    try {
      points = JSON.parse(printed);
    } catch {
      points = printed.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
    }
    if (samePoints(points, history.points)) break;
    await sleep(1000);
  }
  assert.ok(samePoints(points, history.points), `${JSON.stringify(points)}\n${JSON.stringify(history.points)}`);
  await sandbox.remove({ force: true });
});

test("capacity reflects a sandbox of 256 MiB", { skip }, async () => {
  const before = await client.capacity();
  const sandbox = await client.sandbox("ts-capacity").memoryMib(256).start();
  let after = await client.capacity();
  assert.equal(after.memory_committed_bytes - before.memory_committed_bytes, 256 * MIB);
  // The headroom is measured: it appears with the sandbox's first sample.
  await eventually(() => sandbox.metrics().catch(() => null), "a first sample");
  after = await client.capacity();
  const headroom = after.sandboxes.find((h) => h.name === "ts-capacity");
  assert.equal(headroom.memory_limit_bytes, 256 * MIB);
  await sandbox.remove({ force: true });
});

test("errors are typed and carry msbd's message", { skip }, async () => {
  await client.sandbox("ts-taken").create();
  await assert.rejects(client.sandbox("ts-taken").create(), (e) => e instanceof msb.AlreadyExistsError && e.message.includes("ts-taken"));
  await assert.rejects(client.sandbox("ts-bad").memoryMib(1).create(), (e) => e instanceof msb.InvalidArgumentError && e.message.includes("memory"));
  await assert.rejects((await client.get("ts-taken")).kill(15), msb.ConflictError);
  await client.remove("ts-taken");
  await assert.rejects(new msb.Client({ socket: path.join(home, "none.sock") }).list(), msb.DaemonUnreachableError);
});

// The client, the sandbox builder, live sandbox handles and exec.

import * as path from "node:path";
import type { Socket } from "node:net";

import { ConflictError, MsbError, StartFailedError } from "./errors.js";
import type {
  CapacityReport,
  CreateSandboxRequest,
  DrainRequest,
  ExecRequest,
  ExecResponse,
  HistoryResponse,
  KillRequest,
  MetricsReport,
  SandboxConfig,
  SandboxInfo,
  SessionExec,
  StopRequest,
  TerminalSize,
  WaitResponse,
} from "./models.js";
import { Transport, defaultHome, splitLines } from "./transport.js";

/** What a sandbox started without a command runs: nothing, until it is stopped. */
export const IDLE_COMMAND = ["sh", "-c", "while :; do sleep 3600; done"];

/** An instant: a Date, or ms since the Unix epoch. */
export type When = Date | number;

const sandboxPath = (name: string, ...rest: string[]) =>
  ["/v1/sandboxes", encodeURIComponent(name), ...rest].join("/");

const epochMs = (when: When) => (when instanceof Date ? when.getTime() : Math.trunc(when));

function windowQuery(since: When, until?: When, stepMs?: number): string {
  const query = new URLSearchParams({ since_ms: String(epochMs(since)) });
  if (until !== undefined) query.set("until_ms", String(epochMs(until)));
  if (stepMs !== undefined) query.set("step_ms", String(Math.trunc(stepMs)));
  return query.toString();
}

export interface ClientOptions {
  /** The MSB_HOME whose msbd to use (default `$MSB_HOME`, else `~/.msb`). */
  home?: string;
  /** A socket to connect to; alone, msbd is never started. */
  socket?: string;
  /** The msbd binary to start (default: `$MSB_BIN_DIR/msbd`, the PATH, /usr/local/lib/msb). */
  msbd?: string;
}

/** A connection to the msbd of an MSB_HOME, or to a given socket; msbd is started on first
 * use if it is not running. */
export class Client {
  readonly home: string | undefined;
  /** @internal */
  readonly transport: Transport;

  constructor(options: ClientOptions = {}) {
    if (options.socket !== undefined && options.home === undefined) {
      this.home = undefined;
      this.transport = new Transport(undefined, options.socket, options.msbd);
    } else {
      this.home = options.home ?? defaultHome();
      this.transport = new Transport(this.home, options.socket ?? path.join(this.home, "msbd.sock"), options.msbd);
    }
  }

  /** A builder for a new sandbox; an empty name lets msbd pick one (and makes it ephemeral). */
  sandbox(name = ""): SandboxBuilder {
    return new SandboxBuilder(this, name);
  }

  /** The sandbox named `name` (NotFoundError if there is none). */
  async get(name: string): Promise<Sandbox> {
    return new Sandbox(this, await this.transport.request<SandboxInfo>("GET", sandboxPath(name)));
  }

  /** Every sandbox (`all: false`: the running ones), as live handles. */
  async list(options: { all?: boolean } = {}): Promise<Sandbox[]> {
    const all = options.all ?? true;
    const infos = await this.transport.request<SandboxInfo[]>("GET", "/v1/sandboxes" + (all ? "?all=true" : ""));
    return infos.map((info) => new Sandbox(this, info));
  }

  /** Removes a sandbox that is not running (`force`: kills it first). */
  async remove(name: string, options: { force?: boolean } = {}): Promise<void> {
    await this.transport.request("DELETE", sandboxPath(name) + (options.force ? "?force=true" : ""));
  }

  /** The latest sample of every running sandbox (`includeEnded`: and of ended runs). */
  async allSandboxMetrics(options: { includeEnded?: boolean } = {}): Promise<Record<string, MetricsReport>> {
    const reports = await this.transport.request<MetricsReport[]>(
      "GET",
      "/v1/metrics" + (options.includeEnded ? "?all=true" : ""),
    );
    return Object.fromEntries(reports.map((r) => [r.name, r]));
  }

  /** The host's CPUs, memory and disk against what sandboxes were given and use. */
  capacity(): Promise<CapacityReport> {
    return this.transport.request<CapacityReport>("GET", "/v1/capacity");
  }

  /** Every running sandbox's report (or `name`'s) each `intervalMs`, for as long as you iterate. */
  async *metricsStream(intervalMs = 1000, name?: string): AsyncGenerator<MetricsReport> {
    const query = new URLSearchParams({ interval_ms: String(Math.trunc(intervalMs)) });
    if (name !== undefined) query.set("name", name);
    for await (const line of this.transport.lines("/v1/metrics/stream?" + query.toString(), "metrics")) {
      yield line as MetricsReport;
    }
  }

  fleetHistory(since: When, until?: When, stepMs?: number): Promise<HistoryResponse> {
    return this.transport.request<HistoryResponse>("GET", "/v1/history/fleet?" + windowQuery(since, until, stepMs));
  }

  /** @internal */
  async create(request: CreateSandboxRequest): Promise<Sandbox> {
    return new Sandbox(this, await this.transport.request<SandboxInfo>("POST", "/v1/sandboxes", request, "create"));
  }
}

/** What a new sandbox is to be; ends with `create()`, `start()` or `run()`. */
export class SandboxBuilder {
  private readonly settings: SandboxConfig;
  private ephemeralSetting: boolean | undefined;

  constructor(
    private readonly client: Client,
    name: string,
  ) {
    this.settings = {
      name,
      command: [],
      env: [],
      volumes: [],
      labels: {},
      rootfs: { kind: "default" },
      ephemeral: false,
    };
  }

  /** The workload (default for `start()`: idle until stopped; required by `run()`). */
  command(argv: string[]): this {
    this.settings.command = [...argv];
    return this;
  }
  /** A host directory as the root (read-write); `null`: msb's default root. */
  root(hostDirectory: string | null): this {
    this.settings.rootfs = hostDirectory === null ? { kind: "default" } : { kind: "bind", path: hostDirectory };
    return this;
  }
  cpus(cores: number): this {
    this.settings.cpus = cores;
    return this;
  }
  memoryMib(mib: number): this {
    this.settings.memory_mib = mib;
    return this;
  }
  env(values: Record<string, string>): this {
    for (const [key, value] of Object.entries(values)) this.settings.env.push([key, value]);
    return this;
  }
  workdir(dir: string): this {
    this.settings.workdir = dir;
    return this;
  }
  /**
   * A host path at `guest` in the sandbox. A directory is served by msb's file server, whose
   * writes count against `quotaMib` (msbd's default when absent).
   */
  mount(host: string, guest: string, options: { readonly?: boolean; quotaMib?: number } = {}): this {
    this.settings.volumes.push({
      host, guest, readonly: options.readonly ?? false, quota_mib: options.quotaMib ?? null,
    });
    return this;
  }
  /** The named volume `name` (`msb volume create`) at `guest`. */
  volume(name: string, guest: string, options: { readonly?: boolean } = {}): this {
    this.settings.volumes.push({ volume: name, guest, readonly: options.readonly ?? false });
    return this;
  }
  /**
   * Publishes a port, `[BIND_ADDR:]HOST_PORT[-END]:GUEST_PORT[-END][/udp|/tcp]` as `msb run -p`
   * takes it (the bind address defaults to 127.0.0.1).
   */
  publish(spec: string): this {
    (this.settings.published_ports ??= []).push(spec);
    return this;
  }
  /** Appends an egress rule, `allow|deny@CIDR[:tcp|udp[:PORTS]]` (first match wins). */
  netRule(rule: string): this {
    (this.settings.net_rules ??= []).push(rule);
    return this;
  }
  /** Size in MiB of the disk holding the writable root's changes (`--root-disk`; default 4096, sparse). */
  rootDiskMib(mib: number): this {
    this.settings.root_disk_mib = mib;
    return this;
  }
  /** Frames each of the network's two rings holds (`--net-ring-frames`; default 1024). */
  netRingFrames(frames: number): this {
    this.settings.net_ring_frames = frames;
    return this;
  }
  /** No network: the sandbox keeps only its loopback interface. */
  noNetwork(): this {
    this.settings.no_network = true;
    return this;
  }
  label(key: string, value: string): this {
    this.settings.labels[key] = value;
    return this;
  }
  idleTimeout(seconds: number): this {
    this.settings.idle_timeout_secs = seconds;
    return this;
  }
  maxDuration(seconds: number): this {
    this.settings.max_duration_secs = seconds;
    return this;
  }
  /** Removed by the runtime when its run ends (the default for unnamed sandboxes). */
  ephemeral(ephemeral = true): this {
    this.ephemeralSetting = ephemeral;
    return this;
  }
  /** Sampling interval in ms (at least 100); 0 turns metrics off. */
  metricsIntervalMs(ms: number): this {
    this.settings.metrics_interval_ms = ms;
    return this;
  }

  /** The configuration as it will be sent. */
  config(): SandboxConfig {
    const config: SandboxConfig = JSON.parse(JSON.stringify(this.settings));
    config.ephemeral = this.ephemeralSetting ?? config.name === "";
    return config;
  }

  /** Creates the sandbox without starting it. */
  create(): Promise<Sandbox> {
    return this.client.create({ config: this.config(), start: false });
  }

  /** Creates and starts the sandbox; resolves once its workload runs. */
  start(): Promise<Sandbox> {
    const config = this.config();
    if (config.command.length === 0) config.command = [...IDLE_COMMAND];
    return this.client.create({ config, start: true });
  }

  /** Starts the sandbox with its command and waits for it to end. */
  async run(): Promise<{ sandbox: Sandbox; result: WaitResponse }> {
    if (this.settings.command.length === 0) throw new MsbError("run() needs a command: .command([...])");
    const sandbox = await this.start();
    return { sandbox, result: await sandbox.wait() };
  }
}

/** A finished process: exit code (128 + signal when a signal ended it) and its output. */
export interface ExecResult {
  exitCode: number;
  signal: number | null;
  stdout: Buffer;
  stderr: Buffer;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  timedOut: boolean;
}

export interface ExecOptions {
  env?: Record<string, string>;
  workdir?: string;
}

/** A live handle on a sandbox: every call asks msbd. */
export class Sandbox {
  readonly name: string;
  /** What msbd said of the sandbox on the last call that told. */
  lastInfo: SandboxInfo;

  constructor(
    private readonly client: Client,
    info: SandboxInfo,
  ) {
    this.name = info.name;
    this.lastInfo = info;
  }

  private get transport(): Transport {
    return this.client.transport;
  }

  async inspect(): Promise<SandboxInfo> {
    this.lastInfo = await this.transport.request<SandboxInfo>("GET", sandboxPath(this.name));
    return this.lastInfo;
  }

  async status(): Promise<string> {
    return (await this.inspect()).status;
  }

  async start(): Promise<this> {
    this.lastInfo = await this.transport.request<SandboxInfo>("POST", sandboxPath(this.name, "start"));
    return this;
  }

  /** SIGTERM, then SIGKILL after `timeoutSecs` (default 10); `force`: SIGKILL now. */
  async stop(options: { timeoutSecs?: number; force?: boolean } = {}): Promise<this> {
    const request: StopRequest = { timeout_secs: options.timeoutSecs ?? null, force: options.force ?? false };
    this.lastInfo = await this.transport.request<SandboxInfo>("POST", sandboxPath(this.name, "stop"), request);
    return this;
  }

  /** Sends `signal` to the workload (SIGKILL, the default, takes the sandbox down). */
  async kill(signal = 9): Promise<this> {
    const request: KillRequest = { signal };
    this.lastInfo = await this.transport.request<SandboxInfo>("POST", sandboxPath(this.name, "kill"), request);
    return this;
  }

  /** No new exec sessions; waits for the running ones (at most `timeoutSecs`), then stops. */
  async drain(options: { timeoutSecs?: number; stopTimeoutSecs?: number } = {}): Promise<this> {
    const request: DrainRequest = {
      timeout_secs: options.timeoutSecs ?? null,
      stop_timeout_secs: options.stopTimeoutSecs ?? null,
    };
    this.lastInfo = await this.transport.request<SandboxInfo>("POST", sandboxPath(this.name, "drain"), request);
    return this;
  }

  /** Resolves when the run ends, with how it ended. */
  wait(): Promise<WaitResponse> {
    return this.transport.request<WaitResponse>("POST", sandboxPath(this.name, "wait"));
  }

  remove(options: { force?: boolean } = {}): Promise<void> {
    return this.client.remove(this.name, options);
  }

  /** Runs `argv` to its end; its exit code and output (each cut at 16 MiB, flagged). */
  async exec(
    argv: string[],
    options: ExecOptions & { stdin?: Buffer | string; timeoutMs?: number } = {},
  ): Promise<ExecResult> {
    const request: ExecRequest = {
      argv,
      env: Object.entries(options.env ?? {}),
      workdir: options.workdir ?? null,
      stdin: options.stdin === undefined ? null : Buffer.from(options.stdin).toString("base64"),
      timeout_ms: options.timeoutMs ?? null,
    };
    const answer = await this.transport.request<ExecResponse>("POST", sandboxPath(this.name, "exec"), request);
    return {
      exitCode: answer.exit_code,
      signal: answer.signal ?? null,
      stdout: Buffer.from(answer.stdout, "base64"),
      stderr: Buffer.from(answer.stderr, "base64"),
      stdoutTruncated: answer.stdout_truncated,
      stderrTruncated: answer.stderr_truncated,
      timedOut: answer.timed_out,
    };
  }

  /** Starts `argv` with stdin open; its output arrives as it is written (see `Process`). */
  execStream(argv: string[], options: ExecOptions & { stdin?: boolean; pty?: TerminalSize } = {}): Promise<Process> {
    const spec: SessionExec = {
      argv,
      env: Object.entries(options.env ?? {}),
      workdir: options.workdir ?? null,
      stdin: options.stdin ?? true,
      pty: options.pty ?? null,
    };
    return Process.open(this.transport, this.name, { exec: spec });
  }

  /** Follows the main workload: its output from now on, its exit; stdin goes to it. */
  attach(): Promise<Process> {
    return Process.open(this.transport, this.name, { attach: {} });
  }

  /** The latest sample (MetricsDisabledError; MetricsUnavailableError before the first). */
  metrics(): Promise<MetricsReport> {
    return this.transport.request<MetricsReport>("GET", sandboxPath(this.name, "metrics"), undefined, "metrics");
  }

  /** This sandbox's report every `intervalMs` while it runs. */
  metricsStream(intervalMs = 1000): AsyncGenerator<MetricsReport> {
    return this.client.metricsStream(intervalMs, this.name);
  }

  /** Stored samples from `since` to `until` (default now), `stepMs` apart (default: msbd's). */
  metricsHistory(since: When, until?: When, stepMs?: number): Promise<HistoryResponse> {
    return this.transport.request<HistoryResponse>(
      "GET",
      sandboxPath(this.name, "history") + "?" + windowQuery(since, until, stepMs),
    );
  }
}

/** One chunk of output. */
export interface OutputChunk {
  stream: "stdout" | "stderr";
  data: Buffer;
}

type SessionEvent = Record<string, any>;

/** A process started by `execStream` (or an attach): write its stdin, iterate its output with
 * `for await`, `wait()` for its exit. `close()` hangs up (a process still running is killed). */
export class Process implements AsyncIterable<OutputChunk> {
  pid: number | null = null;
  exitCode: number | null = null;
  signal: number | null = null;
  private readonly events: AsyncGenerator<unknown>;
  private done = false;

  private constructor(
    private readonly socket: Socket,
    head: Buffer,
  ) {
    this.events = splitLines(socket, head);
  }

  /** @internal */
  static async open(transport: Transport, name: string, first: Record<string, unknown>): Promise<Process> {
    const { socket, head } = await transport.upgrade(sandboxPath(name, "session"), "msb-session-json");
    const process = new Process(socket, head);
    process.send(first);
    if ("exec" in first) {
      const event = await process.nextEvent();
      if (event && "started" in event) {
        process.pid = event.started.pid;
      } else {
        process.done = true;
        process.close();
        if (event && "exec_failed" in event) {
          const code = ({ not_found: 127, permission_denied: 126 } as Record<string, number>)[event.exec_failed.kind] ?? 125;
          throw new StartFailedError(event.exec_failed.message, { kind: "start_failed", exitCode: code });
        }
        throw new ConflictError(event?.error ?? "the session ended before the process started");
      }
    }
    return process;
  }

  private send(message: unknown): void {
    this.socket.write(JSON.stringify(message) + "\n");
  }

  private async nextEvent(): Promise<SessionEvent | undefined> {
    const next = await this.events.next();
    return next.done ? undefined : (next.value as SessionEvent);
  }

  write(data: Buffer | string): void {
    this.send({ stdin: Buffer.from(data).toString("base64") });
  }
  closeStdin(): void {
    this.send({ stdin_eof: true });
  }
  resize(rows: number, cols: number): void {
    this.send({ resize: { rows, cols } });
  }
  kill(signal = 15): void {
    this.send({ signal });
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<OutputChunk> {
    while (!this.done) {
      const event = await this.nextEvent();
      if (event === undefined) {
        this.done = true;
        throw new MsbError("the session ended without an exit status");
      }
      if ("output" in event) {
        yield { stream: event.output.stream, data: Buffer.from(event.output.data, "base64") };
      } else if ("exited" in event) {
        this.signal = event.exited.signal;
        this.exitCode = event.exited.code ?? 128 + (event.exited.signal ?? 0);
        this.done = true;
      } else if ("error" in event) {
        this.done = true;
        throw new MsbError(event.error);
      }
    }
  }

  /** Reads to the end: the exit code and the output not yet iterated. */
  async wait(): Promise<ExecResult> {
    const out = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
    for await (const chunk of this) out[chunk.stream].push(chunk.data);
    this.close();
    return {
      exitCode: this.exitCode ?? 255,
      signal: this.signal,
      stdout: Buffer.concat(out.stdout),
      stderr: Buffer.concat(out.stderr),
      stdoutTruncated: false,
      stderrTruncated: false,
      timedOut: false,
    };
  }

  close(): void {
    this.socket.destroy();
  }
}

// Talking to msbd: HTTP/1.1 over the unix socket of an MSB_HOME (Node's http with socketPath),
// starting msbd when nobody answers, as the `msb` CLI does.

import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import { DaemonUnreachableError, MsbError, errorFrom } from "./errors.js";

const START_TIMEOUT_MS = 20_000;

/** `$MSB_HOME`, else `~/.msb`. */
export function defaultHome(): string {
  return process.env.MSB_HOME || path.join(os.homedir(), ".msb");
}

/** `$MSB_BIN_DIR/msbd`, else `msbd` on the PATH, else msb's install prefix. */
export function findMsbd(): string | undefined {
  const candidates: string[] = [];
  if (process.env.MSB_BIN_DIR) candidates.push(path.join(process.env.MSB_BIN_DIR, "msbd"));
  for (const dir of (process.env.PATH || "").split(path.delimiter)) {
    if (dir) candidates.push(path.join(dir, "msbd"));
  }
  candidates.push("/usr/local/lib/msb/msbd");
  return candidates.find((c) => {
    try {
      return fs.statSync(c).isFile();
    } catch {
      return false;
    }
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function canConnect(socketPath: string): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    socket.once("connect", () => {
      socket.destroy();
      resolve(null);
    });
    socket.once("error", (e: NodeJS.ErrnoException) => resolve(e));
  });
}

export interface Response {
  status: number;
  body: Buffer;
}

export class Transport {
  private started: Promise<void> | undefined;

  constructor(
    readonly home: string | undefined,
    readonly socketPath: string,
    readonly msbd: string | undefined,
  ) {}

  /** Connects once; starts msbd if nobody answers and a home is known. */
  ensureRunning(): Promise<void> {
    this.started ??= this.start().catch((e) => {
      this.started = undefined;
      throw e;
    });
    return this.started;
  }

  private async start(): Promise<void> {
    const refused = await canConnect(this.socketPath);
    if (!refused) return;
    if (refused.code === "EACCES") {
      throw new DaemonUnreachableError(`${this.socketPath}: MSB_HOME belongs to another user`);
    }
    if (this.home === undefined) {
      throw new DaemonUnreachableError(`msbd is not answering on ${this.socketPath}: ${refused.message}`);
    }
    const msbd = this.msbd ?? findMsbd();
    if (!msbd) {
      throw new DaemonUnreachableError("msbd is not running and was not found (set MSB_BIN_DIR or put msbd on the PATH)");
    }
    fs.mkdirSync(this.home, { recursive: true, mode: 0o700 });
    if ((fs.statSync(this.home).mode & 0o077) !== 0) fs.chmodSync(this.home, 0o700);
    const logPath = path.join(this.home, "msbd.log");
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const log = fs.openSync(logPath, "a", 0o600);
      const child = spawn(msbd, [], {
        env: { ...process.env, MSB_HOME: this.home },
        stdio: ["ignore", log, log],
        detached: true,
      });
      fs.closeSync(log);
      let exit: number | null | undefined;
      child.once("exit", (code) => (exit = code));
      child.once("error", () => (exit = -1));
      child.unref();
      let again = false;
      while (Date.now() < deadline) {
        if (!(await canConnect(this.socketPath))) return;
        if (exit !== undefined) {
          if (exit !== 0) {
            const tail = fs.readFileSync(logPath, "utf8").trimEnd().split("\n").slice(-5).join("\n");
            throw new DaemonUnreachableError(`msbd exited (${exit}) before it was ready; last lines of ${logPath}:\n${tail}`);
          }
          // Exit 0: another msbd holds the home's lock and is starting or leaving.
          await sleep(50);
          again = true;
          break;
        }
        await sleep(10);
      }
      if (!again) {
        throw new DaemonUnreachableError(`msbd did not answer on ${this.socketPath} within ${START_TIMEOUT_MS / 1000} s`);
      }
    }
  }

  private open(method: string, urlPath: string, body?: unknown): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const headers: Record<string, string | number> = { Host: "msbd" };
      if (payload) {
        headers["Content-Type"] = "application/json";
        headers["Content-Length"] = payload.length;
      }
      const request = http.request({ socketPath: this.socketPath, method, path: urlPath, headers, agent: false });
      request.once("response", resolve);
      request.once("error", (e) =>
        reject(new DaemonUnreachableError(`talking to msbd on ${this.socketPath}: ${e.message}`)),
      );
      request.end(payload);
    });
  }

  async raw(method: string, urlPath: string, body?: unknown): Promise<Response> {
    await this.ensureRunning();
    const response = await this.open(method, urlPath, body);
    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    return { status: response.statusCode ?? 0, body: Buffer.concat(chunks) };
  }

  /** One JSON request: the decoded answer, or the typed error. */
  async request<T>(method: string, urlPath: string, body?: unknown, operation = ""): Promise<T> {
    const { status, body: data } = await this.raw(method, urlPath, body);
    let parsed: unknown = undefined;
    if (data.length) {
      try {
        parsed = JSON.parse(data.toString("utf8"));
      } catch {
        parsed = data.toString("utf8");
      }
    }
    if (status >= 300) throw errorFrom(status, parsed, operation);
    return parsed as T;
  }

  /** A GET whose answer is JSON Lines: each decoded line as it arrives. */
  async *lines(urlPath: string, operation = ""): AsyncGenerator<unknown> {
    await this.ensureRunning();
    const response = await this.open("GET", urlPath);
    if ((response.statusCode ?? 0) >= 300) {
      const chunks: Buffer[] = [];
      for await (const chunk of response) chunks.push(chunk as Buffer);
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        parsed = Buffer.concat(chunks).toString("utf8");
      }
      throw errorFrom(response.statusCode ?? 0, parsed, operation);
    }
    try {
      yield* splitLines(response);
    } finally {
      response.destroy();
    }
  }

  /** Opens `urlPath` with `Upgrade: token`; the socket after the 101 answer (and any bytes
   * that came with it). */
  async upgrade(urlPath: string, token: string): Promise<{ socket: net.Socket; head: Buffer }> {
    await this.ensureRunning();
    return new Promise((resolve, reject) => {
      const request = http.request({
        socketPath: this.socketPath,
        method: "GET",
        path: urlPath,
        headers: { Host: "msbd", Connection: "upgrade", Upgrade: token },
        agent: false,
      });
      request.once("upgrade", (_response, socket, head) => resolve({ socket, head }));
      request.once("response", async (response) => {
        const chunks: Buffer[] = [];
        for await (const chunk of response) chunks.push(chunk as Buffer);
        let parsed: unknown;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          parsed = Buffer.concat(chunks).toString("utf8");
        }
        reject(errorFrom(response.statusCode ?? 0, parsed));
      });
      request.once("error", (e) =>
        reject(new DaemonUnreachableError(`talking to msbd on ${this.socketPath}: ${e.message}`)),
      );
      request.end();
    });
  }
}

/** JSON values, one per line, from a byte stream. */
export async function* splitLines(stream: AsyncIterable<unknown>, head?: Buffer): AsyncGenerator<unknown> {
  const decoder = new TextDecoder();
  let pending = head && head.length ? decoder.decode(head, { stream: true }) : "";
  const flush = function* (): Generator<unknown> {
    let at: number;
    while ((at = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, at);
      pending = pending.slice(at + 1);
      if (line.trim()) yield JSON.parse(line);
    }
  };
  yield* flush();
  for await (const chunk of stream) {
    pending += decoder.decode(chunk as Buffer, { stream: true });
    yield* flush();
  }
  if (pending.trim()) {
    throw new MsbError("the stream ended inside a line");
  }
}

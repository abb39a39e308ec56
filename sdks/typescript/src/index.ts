// msb: the Node.js client of msbd, the msb sandbox daemon. The API types (`models.ts`) are
// generated from docs/openapi.json by sdks/codegen.py.

export { Client, Process, Sandbox, SandboxBuilder, IDLE_COMMAND } from "./client.js";
export type { ClientOptions, ExecOptions, ExecResult, OutputChunk, When } from "./client.js";
export * from "./errors.js";
export * from "./models.js";

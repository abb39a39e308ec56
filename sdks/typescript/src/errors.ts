// Errors of the msb SDK: one class per kind of failure, each carrying msbd's message.

export class MsbError extends Error {
  /** HTTP status msbd answered with, when it answered. */
  readonly status?: number;
  /** `ErrorBody.kind`: invalid, not_found, conflict, unprocessable, start_failed, internal. */
  readonly kind?: string;
  /** For a command that could not start: the exit code a shell gives (127, 126). */
  readonly exitCode?: number | null;

  constructor(message: string, options: { status?: number; kind?: string; exitCode?: number | null } = {}) {
    super(message);
    this.name = new.target.name;
    this.status = options.status;
    this.kind = options.kind;
    this.exitCode = options.exitCode;
  }
}

/** No sandbox has this name (404). */
export class NotFoundError extends MsbError {}
/** The sandbox name is taken (409 on create). */
export class AlreadyExistsError extends MsbError {}
/** The sandbox's state does not allow the operation (409): not running, draining, ... */
export class ConflictError extends MsbError {}
/** The request breaks a documented constraint (400) or cannot be carried out here (422). */
export class InvalidArgumentError extends MsbError {}
/** The command could not start (422 `start_failed`); `exitCode` is a shell's. */
export class StartFailedError extends InvalidArgumentError {}
/** The sandbox was created with metrics off. */
export class MetricsDisabledError extends ConflictError {}
/** No sample yet: the first arrives within one interval of the start. */
export class MetricsUnavailableError extends ConflictError {}
/** msbd is not answering on its socket and could not be started. */
export class DaemonUnreachableError extends MsbError {}

/** The typed error for msbd's answer `status` with its `ErrorBody`. */
export function errorFrom(status: number, body: unknown, operation = ""): MsbError {
  const object = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const message = typeof object.error === "string" ? object.error : `msbd answered ${status}: ${String(body)}`;
  const options = {
    status,
    kind: typeof object.kind === "string" ? object.kind : undefined,
    exitCode: typeof object.exit_code === "number" ? object.exit_code : null,
  };
  if (status === 404) return new NotFoundError(message, options);
  if (status === 409) {
    if (operation === "create") return new AlreadyExistsError(message, options);
    if (operation === "metrics") {
      return message.includes("disabled")
        ? new MetricsDisabledError(message, options)
        : new MetricsUnavailableError(message, options);
    }
    return new ConflictError(message, options);
  }
  if (options.kind === "start_failed") return new StartFailedError(message, options);
  if (status === 400 || status === 415 || status === 422) return new InvalidArgumentError(message, options);
  return new MsbError(message, options);
}

"""Schemathesis hooks for fuzzing msbd (loaded through SCHEMATHESIS_HOOKS by fuzz.sh).

- Host paths: whether a host path exists on msbd's host is not something a schema can state,
  and a fuzzer must not bind the host's `/` into a sandbox or write Parquet files over it. So
  the string host paths of a create request (`rootfs.path`, `volumes[].host`) are replaced by a
  scratch directory, and an export's `path` by a file in it. Only strings are replaced, so a
  negative case (a number where a path belongs) stays negative.
- Memory: whether the host has the memory a create request asks for is not something a schema
  can state either (msbd refuses more than the host's `MemTotal` with 422); a valid
  `memory_mib` above it is lowered to 64 MiB, so valid requests still start sandboxes.
- Waits: `stop` answers once its grace (`timeout_secs`, up to an hour as documented) has run
  out, and `drain` once its sessions' wait (`timeout_secs`, up to a day) and then its stop's
  grace (`stop_timeout_secs`) have: longer than a fuzzer waits for an answer. A valid wait is
  shortened to 2 s (an invalid one is left as it is). A drain without `timeout_secs` waits for
  exec sessions only, and the fuzzer's exec requests have ended by the time it sends another.
- A tally of every generated case's mode and answer is appended to $MSB_FUZZ_TALLY, from which
  fuzz.sh reports how many valid inputs each operation refused.
"""

import json
import os

import schemathesis

SCRATCH = os.environ["MSB_FUZZ_SCRATCH"]
TALLY = os.environ["MSB_FUZZ_TALLY"]
HOST_MIB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)


def _shorten(body, key):
    """A valid wait of more than 2 s (up to a day, as documented) becomes 2 s."""
    value = body.get(key)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and value == int(value) and 2 < value <= 86400:
        body[key] = 2


def _scratch_paths(case):
    body = case.body
    if not isinstance(body, dict):
        return
    op = case.operation
    if op.method.upper() == "POST" and op.path == "/v1/sandboxes":
        config = body.get("config")
        if not isinstance(config, dict):
            return
        memory = config.get("memory_mib")
        if isinstance(memory, int) and not isinstance(memory, bool) and memory > HOST_MIB:
            config["memory_mib"] = 64
        rootfs = config.get("rootfs")
        if isinstance(rootfs, dict) and isinstance(rootfs.get("path"), str):
            rootfs["path"] = SCRATCH
        volumes = config.get("volumes")
        if isinstance(volumes, list):
            for volume in volumes:
                if isinstance(volume, dict) and isinstance(volume.get("host"), str):
                    volume["host"] = SCRATCH
    elif op.method.upper() == "POST" and op.path.endswith("/stop"):
        _shorten(body, "timeout_secs")
    elif op.method.upper() == "POST" and op.path.endswith("/drain"):
        _shorten(body, "timeout_secs")
        _shorten(body, "stop_timeout_secs")
    elif op.method.upper() == "POST" and op.path.endswith("/export"):
        path = body.get("path")
        if isinstance(path, str) and path.startswith("/") and path.endswith(".parquet"):
            body["path"] = os.path.join(SCRATCH, "export.parquet")


@schemathesis.hook
def before_call(context, case, kwargs):
    _scratch_paths(case)


@schemathesis.hook
def after_call(context, case, response):
    meta = case.meta
    mode = "unknown"
    if meta is not None:
        mode = "positive" if meta.generation.mode.is_positive else "negative"
    try:
        kind = response.json().get("kind") if response.status_code >= 400 else None
    except Exception:
        kind = None
    with open(TALLY, "a") as f:
        f.write(
            json.dumps(
                {
                    "operation": f"{case.operation.method.upper()} {case.operation.path}",
                    "mode": mode,
                    "status": response.status_code,
                    "kind": kind,
                }
            )
            + "\n"
        )

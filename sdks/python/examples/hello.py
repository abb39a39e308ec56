"""Starts a sandbox, runs code in it and prints its metrics."""

import json

import msb


def main() -> None:
    client = msb.Client()
    with client.sandbox().memory_mib(256).start() as sandbox:
        result = sandbox.exec(["sh", "-c", "echo hello from $(hostname); seq 1 100000 | wc -l"])
        print(result.text, end="")
        report = sandbox.metrics() if _has_sample(sandbox) else None
        if report is not None:
            print(json.dumps(report.to_json(), indent=2))


def _has_sample(sandbox: msb.Sandbox) -> bool:
    import time
    for _ in range(50):
        try:
            sandbox.metrics()
            return True
        except msb.MetricsUnavailableError:
            time.sleep(0.1)
    return False


if __name__ == "__main__":
    main()

"""msb: the Python client of msbd, the msb sandbox daemon.

    import msb
    client = msb.Client()                      # $MSB_HOME or ~/.msb; starts msbd if needed
    with client.sandbox("demo").memory_mib(256).start() as sandbox:
        print(sandbox.exec(["echo", "hello"]).text)
        print(sandbox.metrics().cpu_percent)

Standard library only. The API types (``_models``) are generated from docs/openapi.json.
"""

from ._client import (
    Client,
    ExecResult,
    Process,
    RunResult,
    Sandbox,
    SandboxBuilder,
)
from ._errors import (
    AlreadyExistsError,
    ConflictError,
    DaemonUnreachableError,
    InvalidArgumentError,
    MetricsDisabledError,
    MetricsUnavailableError,
    MsbError,
    NotFoundError,
    StartFailedError,
)
from ._models import (
    CapacityReport,
    HistoryResponse,
    MetricsReport,
    RunInfo,
    SandboxConfig,
    SandboxHeadroom,
    SandboxInfo,
    TerminalSize,
    WaitResponse,
)

__all__ = [
    "AlreadyExistsError", "CapacityReport", "Client", "ConflictError", "DaemonUnreachableError",
    "ExecResult", "HistoryResponse", "InvalidArgumentError", "MetricsDisabledError",
    "MetricsReport", "MetricsUnavailableError", "MsbError", "NotFoundError", "Process",
    "RunInfo", "RunResult", "Sandbox", "SandboxBuilder", "SandboxConfig", "SandboxHeadroom",
    "SandboxInfo", "StartFailedError", "TerminalSize", "WaitResponse",
]

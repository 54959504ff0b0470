"""Run the supervisor's start on small real processes, in a process of its own: the
supervisor becomes a subreaper and ends every descendant of its process when it stops,
which a test's own process must not.

    python -m tests.support.supervisor_run '<json>'

The JSON: {"folder": ..., "ready_timeout": s, "processes": [{"name", "argv", "ready_url"?,
"after"?}]}. Prints {"started": true|false|null (a ValueError), "said": [lines]}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mlops_ide.supervisor.runner import Process, Supervisor


def main() -> None:
    spec = json.loads(sys.argv[1])
    folder = Path(spec["folder"])
    processes = [
        Process(
            name=process["name"],
            argv=process["argv"],
            env=dict(os.environ),
            cwd=folder,
            log=folder / f"{process['name']}.log",
            ready_url=process.get("ready_url"),
            after=tuple(process.get("after", ())),
        )
        for process in spec["processes"]
    ]
    said: list[str] = []
    supervisor = Supervisor(processes, say=said.append)
    try:
        started: bool | None = supervisor.start(ready_timeout=spec["ready_timeout"])
    except ValueError as error:
        started = None
        said.append(f"ValueError: {error}")
    finally:
        supervisor.stop(grace=5)
    print(json.dumps({"started": started, "said": said}))


if __name__ == "__main__":
    main()

"""Child process of the peak-memory benchmark: one file-to-file job, its peak RSS as JSON.

``python -m bench._peak SUBJECT OP SOURCE TARGET`` with ``StreamKeys`` as JSON
on stdin.  Everything is imported and keyed before the baseline is read, so
the figure is what the job adds: peak resident set (``VmHWM``) minus the
resident set (``VmRSS``) just before it.  A fresh process, so memory freed
earlier by another job cannot hide this one's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench._subjects import StreamKeys, stream_job


def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def main() -> None:
    subject, op, source, target = sys.argv[1:5]
    job = stream_job(StreamKeys(**json.loads(sys.stdin.read())), subject, op)
    baseline = status_mib("VmRSS")
    job(Path(source), Path(target))
    print(json.dumps({"baseline_mib": baseline, "peak_mib": status_mib("VmHWM")}))


if __name__ == "__main__":
    main()

"""How long `perflab import ort-profile` takes on a large ONNX Runtime profile, and its peak memory.

Writes a profile in ORT's own layout (`[`, one Chrome-trace event per line, `]`) with the
session events, `model_run` events and, per run, one `_kernel_time` event per node with the args
ORT records (op_name, provider, input/output type and shape), then runs `perflab import
ort-profile` in a fresh child process and prints one line with its time, CPU time and peak RSS:

    python benchmarks/ort_profile_scale.py [--events 1e6] [--nodes 50] [--file PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import perflab_cli, report_resources


def generate(path: Path, n_events: int, n_nodes: int) -> int:
    n_runs = max(1, n_events // (n_nodes + 1))
    written = 2
    with path.open("w") as f:
        f.write("[\n")
        session = {"cat": "Session", "pid": 1, "tid": 1, "ph": "X", "args": {}}
        f.write(json.dumps({**session, "name": "model_loading_uri", "ts": 0, "dur": 600}) + ",\n")
        f.write(json.dumps({**session, "name": "session_initialization", "ts": 700, "dur": 4000}))
        ts = 10_000
        for run in range(n_runs):
            start = ts
            for k in range(n_nodes):
                args = {
                    "op_name": "Conv" if k % 2 else "Relu",
                    "provider": "CPUExecutionProvider",
                    "input_type_shape": [{"float": [1, 64, 56, 56]}, {"float": [64, 64, 3, 3]}],
                    "output_type_shape": [{"float": [1, 64, 56, 56]}],
                    "thread_scheduling_stats": "",
                }
                event = {"cat": "Node", "pid": 1, "tid": 1, "ph": "X", "ts": ts, "dur": 20 + k % 7}
                event.update(name=f"node{k}_kernel_time", args=args)
                f.write(",\n" + json.dumps(event))
                ts += 30
            f.write(
                ",\n" + json.dumps({**session, "name": "model_run", "ts": start, "dur": ts - start})
            )
            written += n_nodes + 1
        f.write("\n]\n")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=float, default=1e6)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--file", type=Path, help="profile to write (default: temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perflab-ort-scale-") as tmp:
        path = args.file or Path(tmp) / "profile.json"
        n = generate(path, int(args.events), args.nodes)
        print(f"profile with {n} events, {path.stat().st_size / 2**20:.0f} MiB")
        out = Path(tmp) / "out"
        seconds, proc = perflab_cli("import", "ort-profile", str(path), "-o", str(out))
        report_resources(f"import ort-profile of {n} events", seconds, proc)


if __name__ == "__main__":
    main()

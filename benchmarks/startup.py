"""How long a user waits for the `stablesam` command, measured side by side in one run: process
start to exit of `stablesam --help`, `stablesam info` and `stablesam segment` with a box on the
shipped coffee photo (the embedded model, mask written), beside `python -c "import torch"` (the
floor every command that runs a model pays) and `python -c pass`. Rounds alternate between the
commands; medians of --rounds are printed, with the machine's load average.

    python benchmarks/startup.py [--rounds 5]

Targets: `--help` <= 1.0 s; `segment` with a box <= 3.0 s end to end.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "src" / "stablesam" / "examples" / "coffee.jpg"


def commands(tmp: Path) -> dict:
    stablesam = [sys.executable, "-m", "stablesam"]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch' (floor)": [sys.executable, "-c", "import torch"],
        "stablesam --help": [*stablesam, "--help"],
        "stablesam info": [*stablesam, "info"],
        "stablesam segment --box (end to end)": [*stablesam, "segment", str(PHOTO), "--box", "170,15,410,305",
                                                 "--out", str(tmp / "cup.png"), "--force"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=None, help="also write the medians as JSON here")
    args = p.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = commands(Path(tmp))
        for _ in range(args.rounds):
            for name, command in runs.items():
                t = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True, env=env, cwd=tmp)
                times.setdefault(name, []).append(time.perf_counter() - t)
    one, five, _ = os.getloadavg()
    medians = {name: statistics.median(t) for name, t in times.items()}
    floor = medians["python -c 'import torch' (floor)"]
    print(f"median of {args.rounds} rounds, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}, load average {one:.1f} (1 min), "
          f"{five:.1f} (5 min) on {os.cpu_count()} cores")
    for name, m in medians.items():
        print(f"  {name:40s} {m:6.2f} s   ({m / floor:.2f} x import torch; all: "
              + ", ".join(f"{t:.2f}" for t in times[name]) + ")")
    if args.out:
        args.out.write_text(json.dumps({"medians_s": medians, "all_s": times, "load_1min": one, "load_5min": five},
                                       indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Chart of a bursty run (scripts/bench.py, phase "chart"): documents per second arriving in S3 and
read by the worker (the bursty pull side) against documents pushed to the cluster (the flat line).
"Read" comes from the worker's "object read" log lines, logged when an object is finished: an
object's records are counted at that moment, although its reader streamed them out at the push rate.

    bench_chart.py SERIES.json OUT.png|OUT.svg

Needs matplotlib (scripts/bench.sh installs a pinned one into its own venv).
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def per_second(events, t0: float, n: int) -> list[int]:
    out = [0] * n
    for t, docs in events:
        i = int(t - t0)
        if 0 <= i < n:
            out[i] += docs
    return out


def cumulative(xs: list[int]) -> list[int]:
    out, s = [], 0
    for x in xs:
        s += x
        out.append(s)
    return out


def main() -> int:
    series_path, out = sys.argv[1], sys.argv[2]
    s = json.load(open(series_path))
    t0 = s["t0"] - 2
    end = max(t for t, _ in s["pushed"] + s["read"] + s["arrived"])
    n = int(end - t0) + 3
    x = list(range(n))
    x_lbl = [v - 2 for v in x]
    arrived = per_second(s["arrived"], t0, n)
    read = per_second(s["read"], t0, n)
    pushed = per_second(s["pushed"], t0, n)
    rate = s["rate_limit_docs_per_sec"]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, height_ratios=[3, 2])
    top.bar(x_lbl, arrived, width=1.0, align="edge", color="#f4b183", label="arriving in S3 (new objects)")
    top.step(x_lbl, read, where="post", color="#2e75b6", lw=1.4, label="read by the worker (each object's records counted when it is fully read)")
    top.step(x_lbl, pushed, where="post", color="#2a9d2a", lw=2.2, label="pushed to the cluster (_bulk)")
    top.axhline(rate, color="black", ls="--", lw=1, label=f"RATE_LIMIT_DOCS_PER_SEC={rate}")
    top.set_ylabel("documents per second")
    peak = max(arrived + read + pushed + [rate])
    top.set_ylim(0, peak * 1.08)
    top.legend(loc="upper right", fontsize=8)
    top.set_title(
        f"Bursty input, steady push: {s['bursts']} bursts of {s['objects_per_burst']} objects x "
        f"{s['records_per_object']} records, {s['burst_every_secs']} s apart",
        fontsize=10,
    )
    top.grid(alpha=0.3)

    ca, cr, cp = cumulative(arrived), cumulative(read), cumulative(pushed)
    bottom.plot(x_lbl, ca, color="#f4b183", lw=2, label="arrived")
    bottom.plot(x_lbl, cr, color="#2e75b6", lw=1.4, label="read (counted at end of object)")
    bottom.plot(x_lbl, cp, color="#2a9d2a", lw=2, label="pushed")
    bottom.fill_between(x_lbl, cp, ca, color="#f4b183", alpha=0.2, label="backlog (waits in SQS/S3)")
    bottom.set_ylabel("documents (cumulative)")
    bottom.set_xlabel("seconds since the first burst")
    bottom.legend(loc="upper left", fontsize=8)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"chart written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Plots for docs/results.md from the suites' JSON files.

``python -m benchmarks.plots OUT_DIR IMG_DIR`` reads whichever of
``sim_scale.json``, ``codec.json``, ``vs_serf.json`` and ``lb_churn.json`` exist
in OUT_DIR and writes one PNG per suite into IMG_DIR. matplotlib is only
needed here (``pip install -e '.[bench]'``), never by the library.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _load(out_dir: Path, name: str) -> dict[str, Any] | None:
    path = out_dir / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sim_scale(data: dict[str, Any], img: Path) -> Path:
    import matplotlib.pyplot as plt

    rows = data["rows"]
    nodes = [r["nodes"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(nodes, [r["wall_s"] for r in rows], "o-", label="total")
    left.plot(nodes, [r["measured_wall_s"] for r in rows], "s--", label="measured 60 s")
    left.axhline(30, color="grey", lw=0.8, ls=":", label="target at 1000 (30 s)")
    left.set(xlabel="nodes", ylabel="wall seconds", title="Simulating 60 s of a cluster")
    left.legend(fontsize=8)
    right.plot(nodes, [r["peak_rss_mb"] for r in rows], "o-", color="tab:green")
    right.axhline(2048, color="grey", lw=0.8, ls=":", label="target at 2000 (2 GiB)")
    right.set(xlabel="nodes", ylabel="peak RSS (MB)", title="Memory")
    right.legend(fontsize=8)
    return _save(fig, img / "sim_scale.png")


def plot_codec(data: dict[str, Any], img: Path) -> Path:
    import matplotlib.pyplot as plt

    rows = data["results"]
    names = [r["case"] for r in rows]
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.bar([x - 0.2 for x in xs], [r["encode_ops_per_s"] for r in rows], 0.4, label="encode")
    ax.bar([x + 0.2 for x in xs], [r["decode_ops_per_s"] for r in rows], 0.4, label="decode")
    ax.set_yscale("log")
    ax.set_xticks(list(xs), names, rotation=20, fontsize=8)
    ax.set(ylabel="operations / s (log)", title="Wire codec throughput (pure Python + msgpack)")
    ax.legend(fontsize=8)
    return _save(fig, img / "codec.png")


def plot_lb_churn(data: dict[str, Any], img: Path) -> Path:
    import matplotlib.pyplot as plt

    results = data["results"]
    modes = [m for m in results if "keepalive" in results[m]]  # (two-balancers: sticky only)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for offset, kind, label in ((-0.2, "keepalive", "keep-alive"),
                                (0.2, "new_connection", "new connection")):
        xs = [i + offset for i in range(len(modes))]
        left.bar(xs, [results[m][kind]["failed"] for m in modes], 0.4, label=label)
        right.bar(xs, [results[m][kind]["p99_ms"] or 0 for m in modes], 0.4, label=label)
    for ax, title, ylabel in ((left, "Failed requests under churn", "requests"),
                              (right, "p99 latency", "ms")):
        ax.set_xticks(range(len(modes)), modes)
        ax.set(title=title, ylabel=ylabel)
        ax.legend(fontsize=8)
    return _save(fig, img / "lb_churn.png")


def plot_vs_serf(data: dict[str, Any], img: Path) -> Path:
    """swimlib/serf ratios per metric and cluster size (1.0 = as fast/small as serf).

    Process start-up is left out: CPython against a Go binary is a ratio in the
    hundreds that would flatten every protocol bar (the table reports it apart).
    """
    import matplotlib.pyplot as plt

    wanted = ("join_convergence_s", "detection_first_s",
              "detection_all_s", "leave_all_s", "rejoin_all_s", "cpu_s_per_min", "rss_kb",
              "pkts_per_s", "bytes_per_s")
    ratios: dict[str, dict[str, float]] = {}
    for size, row in data.get("ratios", {}).items():
        ratios[size] = {}
        for metric in wanted:
            value = row.get(metric)
            if isinstance(value, dict):  # {"median": r, "max": r}
                value = value.get("median")
            if value is not None:
                ratios[size][metric] = float(value)
    sizes = sorted(ratios, key=lambda s: int(s))
    metrics = [m for m in wanted if any(m in ratios[s] for s in sizes)]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / max(1, len(sizes))
    for k, size in enumerate(sizes):
        xs = [i + (k - (len(sizes) - 1) / 2) * width for i in range(len(metrics))]
        ax.bar(xs, [ratios[size].get(m) or 0 for m in metrics], width, label=f"N={size}")
    ax.axhline(1.0, color="black", lw=0.8)
    for i, metric in enumerate(metrics):
        for k, size in enumerate(sizes):
            value = ratios[size].get(metric)
            if value is not None:
                x = i + (k - (len(sizes) - 1) / 2) * width
                ax.text(x, value, f"{value:.2f}", ha="center", va="bottom", fontsize=5)
    ax.set_xticks(range(len(metrics)), metrics, rotation=25, fontsize=7, ha="right")
    ax.set(ylabel="swimlib / serf", title="swimlib vs serf 0.9.4, same run (lower is better)")
    ax.legend(fontsize=8)
    return _save(fig, img / "vs_serf.png")


PLOTTERS = {"sim_scale": plot_sim_scale, "codec": plot_codec, "lb_churn": plot_lb_churn,
            "vs_serf": plot_vs_serf}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.plots OUT_DIR IMG_DIR", file=sys.stderr)
        return 2
    out_dir, img = Path(argv[0]), Path(argv[1])
    img.mkdir(parents=True, exist_ok=True)
    for name, plot in PLOTTERS.items():
        data = _load(out_dir, name)
        if data is None:
            print(f"skip {name}: no {out_dir / (name + '.json')}")
            continue
        try:
            print(f"wrote {plot(data, img)}")
        except (KeyError, TypeError, ValueError) as exc:
            print(f"skip {name}: unexpected JSON shape ({exc})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

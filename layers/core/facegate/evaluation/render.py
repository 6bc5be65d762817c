"""The evaluation report as HTML with PNG plots (matplotlib), drawn from the JSON report alone.

Plots: DET curves per group (within-group impostors, operating points marked), score distributions per
group, FMR and FNMR per group at each operating threshold with their intervals (cross-group FMR apart),
detection failures and quality refusals per group, and 1:N FNIR/FPIR per group. The HTML embeds the PNGs
(one self-contained file to hand over) and the same figures as tables.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facegate.errors import InvalidRequestError
from facegate.evaluation.report import ALL

FLOOR = 1e-7
"""Where a zero rate is drawn on a log axis."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - the [report] extra is part of dev and CI
        raise InvalidRequestError(
            "the HTML report's plots need matplotlib: pip install 'facegate[report]' (or --json-only)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def _groups(cells: Mapping[str, Any]) -> list[str]:
    return [g for g in cells if g != ALL]


def det_plot(report: Mapping[str, Any]) -> bytes | None:
    curves = report["curves"]
    if not curves["genuine"]:
        return None
    drawable = {
        g: (gen, curves["impostor"][g])
        for g, gen in sorted(curves["genuine"].items())
        if gen["n"] and curves["impostor"].get(g, {}).get("n")
    }
    if not drawable:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    thresholds = np.asarray(curves["thresholds"])
    for g, (gen, imp) in drawable.items():
        fmr = np.maximum(np.asarray(imp["k"]) / imp["n"], FLOOR)
        fnmr = np.maximum(np.asarray(gen["k"]) / gen["n"], FLOOR)
        (line,) = ax.plot(fmr, fnmr, label=f"{g} ({gen['n']:,} genuine, {imp['n']:,} impostor pairs)")
        for point in report["operating_points"]:
            i = int(np.argmin(np.abs(thresholds - point["threshold"])))
            ax.plot(fmr[i], fnmr[i], "o", color=line.get_color())
            ax.annotate(
                f"{point['threshold']:.2f}", (fmr[i], fnmr[i]), fontsize=7, xytext=(4, 4), textcoords="offset points"
            )
    for point in report["operating_points"]:
        ax.axvline(point["target_fmr"], color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-6, 1)
    ax.set_ylim(1e-4, 1)
    ax.set_xlabel("false match rate (within group)")
    ax.set_ylabel("false non-match rate")
    ax.set_title(f"DET per group: {report['dataset']['name']} (dots: operating thresholds; dotted: targets)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def score_plot(report: Mapping[str, Any]) -> bytes:
    """Densities of same-person and different-people scores per group; the right panel on a log scale shows
    the impostor tail that crosses the operating thresholds."""
    plt = _pyplot()
    curves = report["curves"]
    thresholds = np.asarray(curves["thresholds"])
    centres = (thresholds[:-1] + thresholds[1:]) / 2
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    groups = sorted({g for g in curves["impostor"] if "~" not in g} | set(curves["genuine"]))
    for ax, log in zip(axes, (False, True), strict=True):
        for n, g in enumerate(groups):
            colour = colours[n % len(colours)]
            imp = curves["impostor"].get(g)
            if imp and imp["n"]:
                above = np.asarray(imp["k"], dtype=np.float64)
                density = (above[:-1] - above[1:]) / imp["n"] / np.diff(thresholds)
                ax.plot(
                    centres,
                    np.where(density > 0, density, np.nan) if log else density,
                    "--",
                    color=colour,
                    label=f"{g} impostor",
                )
            gen = curves["genuine"].get(g)
            if gen and gen["n"]:
                below = np.asarray(gen["k"], dtype=np.float64)
                density = (below[1:] - below[:-1]) / gen["n"] / np.diff(thresholds)
                ax.plot(
                    centres,
                    np.where(density > 0, density, np.nan) if log else density,
                    color=colour,
                    label=f"{g} genuine",
                )
        for point in report["operating_points"]:
            ax.axvline(point["threshold"], color="black", linewidth=0.8)
            ax.annotate(
                ", ".join(point["use_cases"]),
                (point["threshold"], 0.98),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                rotation=90,
                va="top",
                ha="right",
            )
        ax.set_xlabel("cosine score")
        ax.set_ylabel("density (log)" if log else "density")
        if log:
            ax.set_yscale("log")
    axes[0].set_title("score distributions per group (solid: same person; dashed: different people)", fontsize=10)
    axes[1].set_title("the same on a log scale: the tails that cross the thresholds", fontsize=10)
    axes[0].legend(fontsize=7, ncol=2)
    return _png(fig)


def _bars(ax: Any, series: Sequence[tuple[str, Mapping[str, Any]]], *, log: bool) -> None:
    """Grouped bars with Wilson intervals: ``series`` is (label, {group: cell})."""
    groups = [*sorted({g for _, cells in series for g in cells if g != ALL}), ALL]
    width = 0.8 / max(1, len(series))
    drawn = 0
    for s, (label, cells) in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for x, g in enumerate(groups):
            cell = cells.get(g)
            if not cell or not cell["n"]:
                continue
            value = cell["k"] / cell["n"]
            low, high = cell["ci95"]
            shown = max(value, FLOOR) if log else value
            xs.append(x + s * width)
            ys.append(shown)
            lo.append(max(0.0, shown - (max(low, FLOOR) if log else low)))
            hi.append(max(0.0, (max(high, FLOOR) if log else high) - shown))
        if xs:
            ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=3, label=label)
            drawn += 1
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(groups))])
    ax.set_xticklabels(["all" if g == ALL else g for g in groups], rotation=30, ha="right", fontsize=8)
    if not drawn:
        ax.text(0.5, 0.5, "no trials", transform=ax.transAxes, ha="center")
        return
    if log:
        ax.set_yscale("log")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)


def rates_plot(report: Mapping[str, Any]) -> bytes:
    plt = _pyplot()
    at = report["verification"]["at"]
    has_fnmr = any("fnmr" in p for p in at)
    fig, axes = plt.subplots(1, 2 if has_fnmr else 1, figsize=(12 if has_fnmr else 7, 4.5), squeeze=False)
    fmr_series: list[tuple[str, Mapping[str, Any]]] = []
    for p in at:
        fmr_series.append((f"FMR at {p['threshold']:.2f}", p["fmr"]))
        if p["fmr_cross_group"]:
            fmr_series.append((f"cross-group FMR at {p['threshold']:.2f}", p["fmr_cross_group"]))
    _bars(axes[0][0], fmr_series, log=True)
    for p in at:
        axes[0][0].axhline(p["target_fmr"], color="grey", linestyle=":", linewidth=0.8)
    axes[0][0].set_title("false match rate per group (95% intervals; dotted: targets)")
    if has_fnmr:
        _bars(axes[0][1], [(f"FNMR at {p['threshold']:.2f}", p["fnmr"]) for p in at if "fnmr" in p], log=False)
        axes[0][1].set_title("false non-match rate per group (95% intervals)")
    return _png(fig)


def images_plot(report: Mapping[str, Any]) -> bytes:
    plt = _pyplot()
    images = report["images"]
    fig, ax = plt.subplots(figsize=(7, 4))
    series = [
        (label, {g: cells[key] for g, cells in images.items()})
        for key, label in (
            ("no_face", "no face found"),
            ("quality_refused", "refused by the quality bar"),
            ("crowd", "more than one comparable face"),
        )
    ]
    _bars(ax, series, log=False)
    ax.set_title("per image, per group (95% intervals)")
    return _png(fig)


def identification_plot(report: Mapping[str, Any]) -> bytes | None:
    ident = report.get("identification")
    if not ident or not ident["at"]:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), squeeze=False)
    _bars(axes[0][0], [(f"{p['use_case']} FNIR at {p['threshold']:.2f}", p["fnir"]) for p in ident["at"]], log=False)
    axes[0][0].set_title(f"1:N false negative identification rate (gallery {ident['gallery_size']:,})")
    _bars(axes[0][1], [(f"{p['use_case']} FPIR at {p['threshold']:.2f}", p["fpir"]) for p in ident["at"]], log=True)
    axes[0][1].set_title("1:N false positive identification rate")
    return _png(fig)


def plots(report: Mapping[str, Any]) -> dict[str, bytes]:
    drawn = {
        "det.png": det_plot(report),
        "scores.png": score_plot(report),
        "rates.png": rates_plot(report),
        "images.png": images_plot(report),
        "identification.png": identification_plot(report),
    }
    return {name: png for name, png in drawn.items() if png is not None}


def _fmt(cell: Mapping[str, Any] | None) -> str:
    if not cell or not cell["n"]:
        return "–"
    lo, hi = cell["ci95"]
    return f"{cell['k']:,}/{cell['n']:,} = {cell['k'] / cell['n']:.3g} [{lo:.2g}, {hi:.2g}]"


def _table(title: str, rows: list[tuple[str, Mapping[str, Any]]]) -> str:
    groups: list[str] = []
    for _, cells in rows:
        groups += [g for g in cells if g not in groups]
    head = "".join(f"<th>{html.escape('all' if g == ALL else g)}</th>" for g in groups)
    body = "".join(
        f"<tr><th>{html.escape(label)}</th>"
        + "".join(f"<td>{html.escape(_fmt(cells.get(g)))}</td>" for g in groups)
        + "</tr>"
        for label, cells in rows
    )
    return f"<h3>{html.escape(title)}</h3><table><tr><th></th>{head}</tr>{body}</table>"


def _summary_text(s: Mapping[str, Any]) -> str:
    if not s.get("groups"):
        return "–"
    return (
        f"worst {s['worst_group']} {s['max']:.3g}; geometric mean {s['geomean']:.3g}; "
        f"max/geomean {s['max_over_geomean']:.2f}; max/min {s['max_over_min']:.2f}"
        + (f"; no error, floored at 1/n: {', '.join(s['floored'])}" if s["floored"] else "")
        + (f"; too few trials to compare: {', '.join(s['too_small'])}" if s.get("too_small") else "")
    )


def render_html(report: Mapping[str, Any], pngs: Mapping[str, bytes]) -> str:
    d = report["dataset"]
    e = html.escape
    policy = f", policy {e(report['policy_version'])}" if report.get("policy_version") else ""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>facegate evaluation: {e(d['name'])}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;margin:0.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px;text-align:left}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>Evaluation of {e(d['name'])}</h1>",
        f"<p>{d['images']:,} images of {d['identities']:,} identities; group labels: {e(d['group_source'])}; "
        f"labels sha256 {e(d['labels_sha256'])}. Model {e(report['model_version'])}, "
        f"catalog {e(report['catalog_version'])}{policy}; generated {e(report['generated_at'])}.</p>",
        "<ul>" + "".join(f"<li>{e(n)}</li>" for n in report["notes"]) + "</ul>",
        "<h2>Images</h2>",
        _table(
            "per image",
            [
                (label, {g: cells[key] for g, cells in report["images"].items()})
                for key, label in (
                    ("no_face", "no face found"),
                    ("face_too_small", "refused: face too small"),
                    ("low_quality", "refused: low quality"),
                    ("unreadable", "unreadable"),
                    ("crowd", "more than one comparable face"),
                    ("templated", "templated"),
                )
            ],
        ),
        "<h2>Verification (1:1) at the operating thresholds</h2>",
    ]
    for p in report["verification"]["at"]:
        rows = [("FMR within group", p["fmr"])]
        if p["fmr_cross_group"]:
            rows.append(("FMR across groups", p["fmr_cross_group"]))
        if "fnmr" in p:
            rows.append(("FNMR", p["fnmr"]))
        parts.append(
            _table(f"threshold {p['threshold']} ({', '.join(p['use_cases'])}; target FMR {p['target_fmr']:g})", rows)
        )
        parts.append(f"<p>FMR across groups: {e(_summary_text(p['fmr_summary']))}</p>")
        if "fnmr_summary" in p:
            parts.append(f"<p>FNMR across groups: {e(_summary_text(p['fnmr_summary']))}</p>")
    ident = report.get("identification")
    if ident:
        parts.append("<h2>Identification (1:N)</h2>")
        parts.append(
            f"<p>gallery {ident['gallery_size']:,}, {ident['mated_probes']:,} mated and {ident['non_mated_probes']:,} "
            f"non-mated probes: {e(ident['protocol'])}.</p>"
        )
        for p in ident["at"]:
            parts.append(
                _table(
                    f"{p['use_case']} at {p['threshold']} ({p['candidates']} candidates)",
                    [("FNIR", p["fnir"]), ("FPIR", p["fpir"])],
                )
            )
    if report.get("gate"):
        gate = report["gate"]
        parts.append(f"<h2>Release gate: {'passed' if gate['passed'] else 'FAILED'}</h2><ul>")
        parts += [f"<li>{'ok' if c['passed'] else 'EXCEEDED'}: {e(c['text'])}</li>" for c in gate["checks"]]
        parts.append("</ul>")
    parts.append("<h2>Plots</h2>")
    for name, png in pngs.items():
        data = base64.b64encode(png).decode()
        parts.append(f"<h3>{e(name)}</h3><img alt='{e(name)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(report: Mapping[str, Any], out: Path) -> list[Path]:
    """Write the PNGs and ``report.html`` into ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    pngs = plots(report)
    written = []
    for name, png in pngs.items():
        (out / name).write_bytes(png)
        written.append(out / name)
    (out / "report.html").write_text(render_html(report, pngs), encoding="utf-8")
    written.append(out / "report.html")
    return written

"""One self-contained HTML page for a report or a model card: every value escaped, no script, no external
asset, tables for rows of figures. The page renders whatever the generated JSON holds, in its order, so
the HTML and the JSON cannot say different things."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any, Final

_STYLE: Final = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1b1b1b; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #bbb; margin-top: 2.2rem; } h3 { margin-top: 1.4rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; font-weight: 600; }
table.kv > tbody > tr > th { width: 16rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.text { white-space: pre-wrap; margin: .2rem 0; }
ul { margin: .2rem 0; padding-left: 1.2rem; }
"""
# Top-level keys that only identify the document; shown in the title line instead.
_HEADER_KEYS: Final = frozenset({"title", "kind", "schema"})
_NAME_KEYS: Final = ("use_case", "name", "code", "key", "item", "operation")


def _heading(key: str) -> str:
    return escape(key.replace("_", " ").capitalize())


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return escape(f"{value:.6g}")
    return escape(str(value))


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _flat(value: Any) -> bool:
    """A value that fits one table cell: a scalar, or a short list of scalars."""
    return _is_scalar(value) or (isinstance(value, list | tuple) and all(_is_scalar(v) for v in value))


def _td(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "<td>" + ", ".join(_scalar(v) for v in value) + "</td>"
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f'<td class="num">{_scalar(value)}</td>' if numeric else f"<td>{_scalar(value)}</td>"


def _rows_table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    head = "".join(f"<th>{_heading(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_td(row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: str) -> str:
    paragraphs = [p for p in value.split("\n\n") if p.strip()]
    return "".join(f'<p class="text">{escape(p)}</p>' for p in paragraphs) or "<p>—</p>"


def _render(value: Any, depth: int) -> str:
    if isinstance(value, str) and "\n" in value:
        return _text(value)
    if _is_scalar(value):
        return _scalar(value)
    if isinstance(value, Mapping):
        rows = "".join(
            f"<tr><th>{_heading(str(k))}</th><td>{_render(v, depth + 1)}</td></tr>" for k, v in value.items()
        )
        return f'<table class="kv"><tbody>{rows}</tbody></table>'
    items = list(value)
    if not items:
        return "—"
    if all(isinstance(i, Mapping) for i in items):
        if all(_flat(v) for i in items for v in i.values()):
            return _rows_table(items)
        level = min(depth + 3, 6)
        parts = []
        for item in items:
            name = next((str(item[k]) for k in _NAME_KEYS if k in item), "")
            parts.append(f"<section><h{level}>{escape(name)}</h{level}>{_render(item, depth + 1)}</section>")
        return "".join(parts)
    return "<ul>" + "".join(f"<li>{_render(i, depth + 1)}</li>" for i in items) + "</ul>"


def render_html(document: Mapping[str, Any]) -> str:
    """The report (or model card) as one HTML page."""
    title = escape(str(document.get("title", "facegate")))
    kind = escape(f"{document.get('kind', '')} (schema {document.get('schema', '')})")
    sections = "".join(
        f"<section><h2>{_heading(str(key))}</h2>{_render(value, 0)}</section>"
        for key, value in document.items()
        if key not in _HEADER_KEYS
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{title}</h1><p>{kind}</p>{sections}</body></html>\n"
    )

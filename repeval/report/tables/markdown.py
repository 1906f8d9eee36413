"""The Markdown the report templates write, as HTML (pure, no dependency).

Handles what ``report.md.j2`` uses: ATX headings (``#`` to ``####``, with ids for a table of
contents), paragraphs, ``-`` and ``1.`` lists (one level), GitHub pipe tables, fenced code blocks,
images on a line of their own, inline code, ``**bold**``, ``*emphasis*``, links, ``<sup>`` and raw
block HTML lines (``<details>``, ``<summary>``). Everything else is escaped text.
"""
from __future__ import annotations

import html
import re

_RAW = re.compile(r"^\s*</?(details|summary|div|figure|figcaption)\b")
_IMG = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")


def _slug(text: str, seen: dict[str, int]) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    seen[s] = seen.get(s, 0) + 1
    return s if seen[s] == 1 else f"{s}-{seen[s]}"


def inline(text: str) -> str:
    """Inline Markdown -> HTML: code spans first (their content is literal), then the rest escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for p in parts:
        if p.startswith("`") and p.endswith("`") and len(p) >= 2:
            out.append(f"<code>{html.escape(p[1:-1])}</code>")
            continue
        s = html.escape(p, quote=False)
        s = re.sub(r"&lt;(/?)sup&gt;", r"<\1sup>", s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)
        s = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', s)
        out.append(s)
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    head, rule, *body = lines
    aligns = []
    for c in _cells(rule):
        aligns.append("right" if c.endswith(":") and not c.startswith(":") else
                      "center" if c.startswith(":") and c.endswith(":") else "left")
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in _cells(head)) + "</tr></thead>",
           "<tbody>"]
    for line in body:
        cells = _cells(line)
        out.append("<tr>" + "".join(f'<td class="{a}">{inline(c)}</td>' for c, a in zip(cells, aligns + ["left"] *
                                                                                         len(cells))) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def to_html(md: str) -> tuple[str, list[tuple[int, str, str]]]:
    """(HTML body, table of contents [(level, id, title)]) of a Markdown text."""
    lines = md.splitlines()
    out: list[str] = []
    toc: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
            continue
        if m := re.match(r"^(#{1,4}) (.*)$", line):
            level, text = len(m.group(1)), m.group(2).strip()
            sid = _slug(text, seen)
            toc.append((level, sid, text))
            out.append(f'<h{level} id="{sid}">{inline(text)}</h{level}>')
            i += 1
            continue
        if _RAW.match(line):
            out.append(line.strip())
            i += 1
            continue
        if m := _IMG.match(line.strip()):
            alt, src = m.groups()
            out.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}">'
                       f"<figcaption>{inline(alt)}</figcaption></figure>")
            i += 1
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            out.append(_table(lines[i:j]))
            i = j
            continue
        if m := re.match(r"^(\s*)(- |\d+\. )", line):
            ordered = m.group(2)[0].isdigit()
            items: list[str] = []
            while i < len(lines) and lines[i].strip():
                mm = re.match(r"^\s*(- |\d+\. )(.*)$", lines[i])
                if mm and (mm.group(1)[0].isdigit()) == ordered:
                    items.append(mm.group(2))
                elif items:
                    items[-1] += " " + lines[i].strip()
                i += 1
            tag = "ol" if ordered else "ul"
            out.append(f"<{tag}>" + "".join(f"<li>{inline(t)}</li>" for t in items) + f"</{tag}>")
            continue
        para = []
        while i < len(lines) and lines[i].strip() and not re.match(r"^(#{1,4} |```|\s*\||\s*- |\s*\d+\. )", lines[i]) \
                and not _RAW.match(lines[i]) and not _IMG.match(lines[i].strip()):
            para.append(lines[i].strip())
            i += 1
        if para:
            out.append(f"<p>{inline(' '.join(para))}</p>")
        else:       # a line no rule took: keep it as text
            out.append(f"<p>{inline(line)}</p>")
            i += 1
    return "\n".join(out) + "\n", toc

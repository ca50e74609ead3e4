"""A griffe extension: lrpjax's Google-style docstrings, written with reStructuredText inline markup,
rendered as the Markdown that mkdocstrings reads.

The package's docstrings follow the Google layout (Args / Returns / Raises) but use reST inline
markup: ``code`` in double backticks, cross-references such as :class:`Epsilon` or
:func:`~lrpjax.rules.preset`, and literal blocks introduced by a paragraph ending in ``::``. Markdown
reads double backticks as code already; this extension rewrites the rest, outside code:

* a cross-reference role becomes a link to the object when griffe resolves the name from where the
  docstring stands (an *optional* autorefs link: a name the site does not document, such as a private
  helper, is shown as code without a link and without a warning; every name that does not resolve is
  listed at the end of the build);
* a paragraph ending in ``::`` ends in ``:`` (the indented block after it is a Markdown code block);
* square brackets in prose, e.g. ``(B, [K,] [C,] L)`` or ``params["left"]["W"]`` outside backticks,
  are escaped, since Markdown would read them as reference links (the docstrings hold no Markdown
  links);
* a docstring is dedented by the column of its opening quotes, not by its smallest indentation, so
  a docstring whose body is only an indented example keeps it as a code block;
* a Google entry naming several parameters at once (``gate_fn, signal_fn: ...``) becomes one entry
  per parameter with the shared description, the only form the Google parser knows.

Nothing in the package changes; the rewrite applies to the documentation build only.
"""

from __future__ import annotations

import ast
import logging
import re

import griffe

_log = logging.getLogger("mkdocs.plugins.griffe_rst")

_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([\w.]+)(\(\))?`")
_CODE = re.compile(r"(``.+?``|`[^`\n]+`)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Attributes|Keyword Args|Other Parameters):\s*$")
_GROUPED = re.compile(r"^(\s+)(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)+)\s*:(\s.*|)$")

UNRESOLVED: set[tuple[str, str]] = set()
"""(object path, name) of every cross-reference role whose name griffe could not resolve."""


def _resolve(obj: griffe.Object, name: str) -> str | None:
    """The full path of ``name`` as seen from ``obj`` (a dotted name is resolved by its first part)."""
    if name.startswith("lrpjax"):
        return name
    head, _, rest = name.partition(".")
    scope = obj
    while scope is not None:
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError, KeyError):
            scope = scope.parent
            continue
        return f"{path}.{rest}" if rest else path
    return None


def _link(obj: griffe.Object, match: re.Match) -> str:
    short, name, call = match.group(1), match.group(2), match.group(3) or ""
    title = name.rsplit(".", 1)[-1] if short else name
    path = _resolve(obj, name)
    if path is None:
        if (obj.path, name) not in UNRESOLVED:
            UNRESOLVED.add((obj.path, name))
            _log.info("griffe_rst: %s: the cross-reference %r names nothing griffe can resolve", obj.path, name)
        return f"`{title}{call}`"
    return f'<autoref identifier="{path}" optional><code>{title}{call}</code></autoref>'


def _prose(obj: griffe.Object, text: str) -> str:
    """Rewrites one stretch of text that holds no code span."""
    text = text.replace("[", "\\[").replace("]", "\\]")
    return text


def _line(obj: griffe.Object, line: str) -> str:
    """Rewrites one line of prose: roles first (they hold backticks), then the text between code spans."""
    pieces = []
    position = 0
    for match in _ROLE.finditer(line):
        pieces.append(("text", line[position:match.start()]))
        pieces.append(("html", _link(obj, match)))
        position = match.end()
    pieces.append(("text", line[position:]))
    out = []
    for kind, piece in pieces:
        if kind == "html":
            out.append(piece)
            continue
        for k, part in enumerate(_CODE.split(piece)):
            out.append(part if k % 2 else _prose(obj, part))
    return "".join(out)


def _split_grouped(lines: list[str]) -> list[str]:
    """``a, b: text`` in an Args/Attributes section becomes ``a: text`` and ``b: text``."""
    out: list[str] = []
    section_indent = None
    k = 0
    while k < len(lines):
        line = lines[k]
        header = _SECTION.match(line)
        if header:
            section_indent = len(header.group(1))
            out.append(line)
            k += 1
            continue
        if section_indent is not None and line.strip() and len(line) - len(line.lstrip()) <= section_indent:
            section_indent = None
        grouped = _GROUPED.match(line) if section_indent is not None else None
        if grouped:
            indent, names, first = grouped.groups()
            body = [first]
            k += 1
            while k < len(lines) and (not lines[k].strip() or len(lines[k]) - len(lines[k].lstrip()) > len(indent)):
                body.append("\n" + lines[k])
                k += 1
            for name in re.split(r"\s*,\s*", names):
                out.append(f"{indent}{name}:{''.join(body)}")
            continue
        out.append(line)
        k += 1
    return out


def rewrite(obj: griffe.Object, text: str) -> str:
    """The Markdown form of one docstring (module docstring)."""
    lines = _split_grouped(text.split("\n"))
    out = []
    in_fence = False
    literal_indent = None   # indentation of the paragraph before a literal (code) block
    paragraph_indent = 0    # indentation of the last line of prose
    blank_before = True
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
            out.append(line)
            continue
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None:
            if not line.strip() or indent > literal_indent:
                out.append(line)
                continue
            literal_indent = None
        if in_fence or not line.strip():
            out.append(line)
            blank_before = blank_before or not line.strip()
            continue
        if blank_before and indent >= paragraph_indent + 4:
            # An indented block after a blank line: a code block in Markdown (and a literal in reST).
            out.append(line)
            literal_indent = paragraph_indent
            continue
        blank_before = False
        paragraph_indent = indent
        if line.rstrip().endswith("::") and line.strip() != "::":
            out.append(_line(obj, line.rstrip()[:-1]))
            literal_indent = indent
            continue
        out.append(_line(obj, line))
    return "\n".join(out)


def _relative_to_quotes(raw: str, column: int) -> str:
    """A docstring dedented by the column of its opening quotes (not by its smallest indentation).

    ``inspect.cleandoc`` removes the indentation common to all lines after the first, so a docstring
    whose body is only an indented example (``lrpjax/__init__.py``) loses the indentation that makes it
    a code block. Relative to the quotes, prose sits at column 0 and an example stays indented.
    """
    lines = raw.expandtabs().split("\n")
    out = [lines[0].strip()]
    for line in lines[1:]:
        indent = len(line) - len(line.lstrip(" "))
        out.append(line[min(indent, column):])
    while out and not out[-1].strip():
        out.pop()
    while out and not out[0].strip():
        out.pop(0)
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Rewrites every docstring of the loaded package once the object tree is complete."""

    def on_instance(self, *, node, obj: griffe.Object, agent, **kwargs) -> None:
        body = getattr(node, "body", None)
        if obj.docstring is None or not isinstance(node, ast.AST) or not body:
            return
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            obj.docstring.value = _relative_to_quotes(first.value.value, first.col_offset)

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        self._visit(pkg, set())

    def _visit(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj, obj.docstring.value)
        if obj.is_class:
            _drop_described_fields(obj)
            for name, member in obj.members.items():
                # Special methods are machinery (__post_init__ validates, __repr__ shows), except the call.
                if name.startswith("__") and name.endswith("__") and name not in ("__call__", "__init__"):
                    member.public = False
        for member in list(obj.members.values()):
            if not member.is_alias:
                self._visit(member, seen)


def _described(docstring: str) -> set[str]:
    """The names listed in the Attributes section of a class docstring."""
    names: set[str] = set()
    section = None
    for line in docstring.split("\n"):
        header = _SECTION.match(line)
        if header:
            section = len(header.group(1)) if header.group(2) == "Attributes" else None
            continue
        if section is None or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= section:
            section = None
            continue
        entry = re.match(r"^\s+(\w+)\s*(?:\([^)]*\))?\s*:", line)
        if entry and indent == section + 4:
            names.add(entry.group(1))
    return names


def _drop_described_fields(cls: griffe.Class) -> None:
    """Fields described in the class's Attributes section are not rendered a second time as members.

    ``show_if_no_docstring`` makes public names without a docstring appear (constants with their
    values); without this, every dataclass field would appear twice, once in the Attributes table
    and once as a member without text. They are marked non-public (mkdocs.yml filters on "public"), not
    removed, so the class's signature and the table's types still come from them.
    """
    if cls.docstring is None:
        return
    for name in _described(cls.docstring.value):
        member = cls.members.get(name)
        if member is not None and not member.is_alias and member.is_attribute and member.docstring is None:
            member.public = False   # hidden by the "public" filter; still a field of the signature

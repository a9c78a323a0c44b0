"""Every user string that reaches an HTML page or a markdown file ftlab writes goes through here.

Labels, texts, column names, file names and params are the user's: a label
``</script><script>alert(3)</script>`` must show as those characters in a report that is shared
(CI artifacts, Data Docs sites, the model card on a hub), never run. One module, so every writer
escapes the same way:

- :func:`html_text` for text and attribute values in HTML that ftlab builds itself;
- :func:`md_text`, :func:`md_code`, :func:`md_link`, :func:`md_fence` and :func:`md_no_html` for markdown (the
  comparison, the model card, the CI summary, Prefect artifacts): markdown passes raw HTML through,
  so ``<`` and ``&`` become entities there too;
- :func:`evidently_page` for Evidently's saved HTML, which embeds its data as JSON in a ``<script>``
  block without escaping ``</``.
"""

from __future__ import annotations

import html
import json
import os
import re
from urllib.parse import quote

# Markdown's active characters in running text: code spans, emphasis, links and images, table cells.
# "_" is left alone: ftlab's own names use it (prompt_tuning), and inside a word it is no emphasis.
_MD_ACTIVE = re.compile(r"([\\`*\[\]|])")
_CODE_SAFE = re.compile(r"[^<>&`|\r\n]*")  # what a code span shows as written: no HTML, no end of span


def html_text(value: object) -> str:
    """``value`` as text for an HTML element or a quoted attribute value."""
    return html.escape(str(value), quote=True)


def md_no_html(text: str) -> str:
    """Markdown that stays markdown (a table from ``dvc metrics diff``, say) with no raw HTML in it:
    ``&``, ``<`` and ``>`` as entities, which every renderer shows as the characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def md_text(value: object) -> str:
    """``value`` as plain text inside a markdown paragraph or table cell: no HTML, no links, images,
    code spans or emphasis of its own, and on one line (a newline would end a table row)."""
    one_line = " ".join(str(value).splitlines())
    return _MD_ACTIVE.sub(r"\\\1", md_no_html(one_line))


def md_code(value: object) -> str:
    """``value`` as an inline code span when it can be one unchanged (names, paths); otherwise as
    :func:`md_text`, since a code span shows entities literally and cannot hold a backtick run safely."""
    text = str(value)
    return f"`{text}`" if _CODE_SAFE.fullmatch(text) else md_text(text)


def md_link(path: str) -> str:
    """A markdown link to a relative path: the path as escaped text, the target percent-encoded (a
    space, a parenthesis or ``<`` would end it), so a directory named in params cannot inject markup."""
    return f"[{md_text(path)}]({quote(path.replace(os.sep, '/'))})"


def md_fence(text: str, info: str = "") -> str:
    """``text`` as a fenced code block, its fence longer than any backtick run inside it, so that
    the text cannot close the block. Inside a fence markdown shows everything as written."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


class UnsafePage(RuntimeError):
    """Evidently's page is not laid out as :func:`evidently_page` expects: writing it could run user strings."""


# Evidently 0.7 (evidently.legacy.utils.dashboard.file_html_template): one data <script> holding
# `var <id> = <JSON>;` and `var additional_graphs_<id> = <JSON>;`
_DATA_START = re.compile(r"<script>\s*var (\w+) = ")


def evidently_page(page: str) -> str:
    """Evidently's standalone HTML with ``<`` inside its embedded JSON written ``\\u003c``.

    Evidently ``json.dumps`` the report into a ``<script>`` block, so a string holding ``</script>``
    ends the block and what follows runs. Each JSON value is found with ``json.JSONDecoder.raw_decode``
    (exact, whatever the strings hold) and only its ``<`` characters are rewritten: in JSON they occur
    inside strings only, where ``\\u003c`` is the same character to the page's JavaScript, so the
    report shows the user's strings exactly. Escaping the data before handing it to Evidently instead
    would change what the report shows and miss strings Evidently derives itself. A page laid out
    otherwise (a new Evidently version) raises UnsafePage rather than being written unchecked."""
    start = _DATA_START.search(page)
    if start is None:
        raise UnsafePage("Evidently's HTML has no `<script> var <id> = {...}` data block: its layout changed; "
                         "ftlab cannot make the report safe for user strings")
    decoder, out, at = json.JSONDecoder(), [page[: start.end()]], start.end()
    for follows in (rf";\s*var additional_graphs_{start.group(1)} = ", r";\s*</script>"):
        try:
            _, end = decoder.raw_decode(page, at)
        except json.JSONDecodeError as e:
            raise UnsafePage(f"Evidently's data block is not JSON at character {e.pos}: its layout changed") from e
        tail = re.compile(follows).match(page, end)
        if tail is None:
            raise UnsafePage(f"Evidently's data block does not continue with {follows!r}: its layout changed")
        out += [page[at:end].replace("<", "\\u003c"), tail.group(0)]
        at = tail.end()
    return "".join(out) + page[at:]

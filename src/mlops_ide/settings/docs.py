"""The settings tables of docs/operator-guide.md (local mode) and docs/kubernetes.md, made from the
settings table, between `<!-- settings:<mode> -->` and `<!-- /settings -->`.

    python -m mlops_ide.settings.docs           rewrite the tables in place
    python -m mlops_ide.settings.docs --check   exit 1 naming each table that is out of date
"""

from __future__ import annotations

import re
import sys

from mlops_ide.settings import CHECKOUT, Setting, table

PAGES = {"local": CHECKOUT / "docs" / "operator-guide.md", "kubernetes": CHECKOUT / "docs" / "kubernetes.md"}
READERS = {"hub": "", "DAGs": "(read by the DAGs) "}


def markdown(mode: str, rows: tuple[Setting, ...] | None = None) -> str:
    """The table of every setting `mode` reads, one row per variable."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for row in table.rows() if rows is None else rows:
        if mode not in row.modes:
            continue
        reader = READERS.get(row.reader(mode), f"(read by {row.reader(mode)}) ")
        lines.append(f"| `{row.name}` | {row.documented_default(mode)} | {reader}{row.help} |")
    return "\n".join(lines)


def section(mode: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- settings:{mode} -->\n).*?(<!-- /settings -->)", re.DOTALL)


def render(mode: str, page: str) -> str:
    """`page` with its table for `mode` made anew; ValueError when it has no markers."""
    pattern = section(mode)
    if not pattern.search(page):
        raise ValueError(f"no '<!-- settings:{mode} -->' ... '<!-- /settings -->' markers")
    return pattern.sub(lambda match: match.group(1) + markdown(mode) + "\n" + match.group(2), page, count=1)


def main(argv: list[str] | None = None) -> int:
    check = (sys.argv[1:] if argv is None else argv) == ["--check"]
    stale = []
    for mode, path in PAGES.items():
        page = path.read_text()
        fresh = render(mode, page)
        if fresh != page:
            stale.append(path)
            if not check:
                path.write_text(fresh)
    for path in stale:
        verb = "is out of date: run `python -m mlops_ide.settings.docs`" if check else "rewritten"
        print(f"{path.relative_to(CHECKOUT)}: settings table {verb}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

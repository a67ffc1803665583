"""README is the front page, docs/*.md the book: every relative link in them resolves (a file
that exists; for ``page.md#anchor``, a heading of that page with GitHub's slug), README stays
under 200 lines, and every ``make <target>`` README names is a target of the Makefile."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from resemote_lib import paths

README = paths.ROOT / "README.md"
MAKEFILE = paths.ROOT / "Makefile"
README_MAX_LINES = 199  # "under 200 lines" (issue 30)

_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
_IMG_SRC = re.compile(r"<img\b[^>]*\bsrc=[\"']([^\"']+)[\"']", re.I)
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$", re.M)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_MAKE = re.compile(r"(?:^|[\s;&|(])make\s+((?:[A-Z_]+=\S*\s+)*)([a-z][\w.-]*)")
_MAKE_RULE = re.compile(r"^([^\s#$=:][^=:]*?)\s*::?(?!=)", re.M)


def doc_pages() -> list[Path]:
    """README.md and the top-level pages of docs/ (not the generated subfolders)."""
    return [README, *sorted((paths.ROOT / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """The text GitHub renders as prose: without fenced blocks and HTML comments (kept code spans)."""
    return _COMMENT.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    """Every link and image target of a markdown text, outside code and comments."""
    prose = _CODE_SPAN.sub("", _prose(text))
    return [*_INLINE_LINK.findall(prose), *_REFERENCE_LINK.findall(prose), *_IMG_SRC.findall(prose)]


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text (no markup), lower-cased, every character
    but letters, digits, spaces, hyphens and underscores dropped, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text)  # emphasis markers, not snake_case
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a markdown page's headings; repeated slugs get -1, -2... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, heading in _HEADING.findall(_prose(text)):
        slug = github_slug(heading)
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` that name no file, leave the repository, or name a
    heading its markdown target does not have; each with the reason."""
    broken = []
    for link in links(page.read_text(encoding="utf-8")):
        if _SCHEME.match(link):
            continue  # https:, mailto: ...: not a file of this repository
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.is_relative_to(paths.ROOT):
            broken.append(f"{link}: outside the repository")
        elif not path.exists():
            broken.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path.read_text(encoding="utf-8")):
            broken.append(f"{link}: no heading with the anchor #{anchor} in {path.relative_to(paths.ROOT)}")
    return broken


def make_targets_named(text: str) -> set[str]:
    """The targets of every ``make ...`` command written in code (spans and fenced blocks)."""
    spans = _CODE_SPAN.finditer(_FENCE.sub("", text))
    code = [m.group(0) for m in _FENCE.finditer(text)] + [m.group(2) for m in spans]
    return {m.group(2) for block in code for m in _MAKE.finditer(block)}


def makefile_targets(text: str) -> set[str]:
    """The rule targets of a Makefile (not variable assignments, not recipe lines)."""
    return {t for m in _MAKE_RULE.finditer(text) for t in m.group(1).split()}


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(paths.ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_readme_is_under_200_lines():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines: move reference material to docs/ (issue 30)"


def test_every_make_target_readme_names_exists():
    named = make_targets_named(README.read_text(encoding="utf-8"))
    assert {"demo", "test"} <= named  # the two commands, as .ci/run and the Makefile's header say
    assert named - makefile_targets(MAKEFILE.read_text(encoding="utf-8")) == set()


def test_github_slug_rule():
    assert github_slug("On one GPU, timed: `make bench-gpu`") == "on-one-gpu-timed-make-bench-gpu"
    assert github_slug("Evaluating the authors' checkpoints") == "evaluating-the-authors-checkpoints"
    assert github_slug("On Kaggle (T4)") == "on-kaggle-t4"
    assert github_slug("A **bold** [link](x.md) and snake_case") == "a-bold-link-and-snake_case"
    assert github_slug("Disk — and more") == "disk--and-more"
    assert anchors("# Notes\n## Notes\n```\n# not a heading\n```\n") == {"notes", "notes-1"}


def test_links_outside_code_and_comments_only():
    text = ("[a](a.md) ![b](img/b.png) `[c](c.md)` [`code`](t.md#x)\n```\n[d](d.md)\n```\n<!-- [e](e.md) -->\n"
            '[f]: f.md\n<img src="g.png">\n[h](https://x.org/h)\n')
    assert sorted(links(text)) == ["a.md", "f.md", "g.png", "https://x.org/h", "img/b.png", "t.md#x"]


def test_make_targets_are_read_from_code_and_the_makefile():
    text = "`make demo` and\n```bash\nSMOKE=1 make bench-gpu DATA=x\nmake docs-ablation RUN=r\n```\nwe make sure"
    assert make_targets_named(text) == {"demo", "bench-gpu", "docs-ablation"}
    rules = "X := 1\n.PHONY: a b\na: $(STAMP)\n\techo make c\n$(STAMP): x\nb:\n"
    assert makefile_targets(rules) == {".PHONY", "a", "b"}

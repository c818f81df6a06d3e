"""The review page shows untrusted text: it and its assets are sent with a Content-Security-Policy that allows no
inline script or style and no framing, and the page's own HTML and script need nothing that policy forbids (the
browser test, tests/e2e/test_review_browser.py, checks that no violation is reported while a reviewer works)."""

from __future__ import annotations

import re

from ctax.api.web import STATIC, templates


def _policy(header: str) -> dict[str, set[str]]:
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {name: set(values) for name, *values in directives}


def test_the_page_and_its_assets_send_the_security_headers(client) -> None:
    for url in ("/review", "/review/static/review.js", "/review/static/review.css"):
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["x-frame-options"] == "DENY", url
        assert answer.headers["x-content-type-options"] == "nosniff", url
        assert answer.headers["referrer-policy"] == "no-referrer", url  # the key never leaks in a Referer
        policy = _policy(answer.headers["content-security-policy"])
        assert policy["default-src"] == {"'none'"}
        assert policy["script-src"] == {"'self'"} and policy["style-src"] == {"'self'"}, policy
        assert policy["frame-ancestors"] == {"'none'"} and policy["base-uri"] == {"'none'"}
        assert policy["connect-src"] == {"'self'"}
        assert policy["img-src"] == {"'self'", "blob:", "data:"}  # images arrive as blob: URLs, the icon as data:


def test_the_page_needs_no_inline_script_or_style() -> None:
    assert templates.env.loader is not None
    html = templates.env.loader.get_source(templates.env, "review.html")[0]
    for tag in re.findall(r"<script\b[^>]*>", html):
        # Only same-origin files run; the vocabulary is a JSON data block, which browsers never execute.
        assert re.search(r'\bsrc="/review/static/', tag) or 'type="application/json"' in tag, tag
    assert "<style" not in html
    sources = {"review.html": html, "review.js": (STATIC / "review.js").read_text()}
    for name, text in sources.items():
        # style="..." and on...="..." attributes (in the template or in review.js's HTML strings) are inline
        # style and script: the policy blocks them. review.js sets computed sizes through element.style.
        assert not re.findall(r"\sstyle\s*=", text), name
        assert not re.findall(r"\son[a-z]+\s*=\s*[\"'`$]", text), name
        assert "javascript:" not in text, name
    script = sources["review.js"]
    assert "eval(" not in script and "new Function" not in script and "setAttribute(\"style\"" not in script

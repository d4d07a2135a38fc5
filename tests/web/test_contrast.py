"""Every coloured background in the pages' stylesheet carries text at WCAG AA contrast
(4.5:1 for normal text; issue 17 found white on the Okabe-Ito green at 3.42:1 and on
orange at 3.87:1). Rules without a colour of their own get the page's ink."""

from __future__ import annotations

import re

from rewards.settings import REPO_ROOT

CSS = (REPO_ROOT / "rewards" / "web" / "static" / "app.css").read_text()
VARIABLES = dict(re.findall(r"--([a-z]+):\s*(#[0-9a-fA-F]{3,6})", CSS))
RULE = re.compile(r"([^{}]+)\{([^}]*)\}")


def _hex(value: str) -> str | None:
    value = value.strip()
    found = re.fullmatch(r"var\(--([a-z]+)\)", value)
    if found:
        value = VARIABLES[found.group(1)]
    if not re.fullmatch(r"#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}", value):
        return None
    if len(value) == 4:
        value = "#" + "".join(c * 2 for c in value[1:])
    return value.lower()


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_check_knows_the_published_figures() -> None:
    assert round(contrast("#ffffff", "#009e73"), 2) == 3.42
    assert round(contrast("#ffffff", "#d55e00"), 2) == 3.87
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0


def test_every_background_carries_its_text_at_aa_contrast() -> None:
    checked, low = 0, []
    for selector, body in RULE.findall(CSS):
        declared = dict((k.strip(), v) for k, v in re.findall(r"([a-z-]+)\s*:\s*([^;]+)", body))
        background = _hex(declared.get("background", "")) or _hex(
            declared.get("background-color", "")
        )
        if background is None or selector.strip().startswith(":root"):
            continue
        text = _hex(declared.get("color", "var(--ink)")) or VARIABLES["ink"]
        ratio = contrast(background, text)
        checked += 1
        if ratio < 4.5:
            low.append(f"{selector.strip()}: {text} on {background} is {ratio:.2f}:1")
    assert checked >= 8
    assert low == []

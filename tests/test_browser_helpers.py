"""The GIF assembly of the browser loop (tests/browser.py), on synthetic frames: no browser needed.

The README's animation is built by :func:`tests.browser.assemble_gif` from the loop test's frames; these
checks pin what a reader of the README gets: every frame kept, in order, each shown as long as asked, at the
asked width, looping, and small enough to embed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.browser import assemble_gif

COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"]


def synthetic_frames(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """One PNG per size, each a distinct flat colour with a black bar (GIF writers merge identical frames)."""
    paths = []
    for i, (size, color) in enumerate(zip(sizes, COLORS, strict=False)):
        img = Image.new("RGB", size, color)
        img.paste((0, 0, 0), (0, 0, size[0] // (i + 2), size[1] // 10))
        paths.append(folder / f"{i:02d}.png")
        img.save(paths[-1])
    return paths


def gif_frames(path: Path) -> list[tuple[tuple[int, int], int, tuple[int, int, int]]]:
    """(size, duration in ms, colour at the centre) of each frame of a GIF."""
    out = []
    with Image.open(path) as gif:
        for i in range(gif.n_frames):
            gif.seek(i)
            rgb = gif.convert("RGB")
            out.append((gif.size, gif.info["duration"], rgb.getpixel((gif.width // 2, gif.height // 2))))
    return out


def test_frames_are_kept_in_order_scaled_and_timed(tmp_path):
    frames = synthetic_frames(tmp_path, [(1400, 900), (1400, 900), (1400, 2000), (700, 450)])
    out = assemble_gif(frames, tmp_path / "out" / "loop.gif", seconds_per_frame=2.5, width=700)

    got = gif_frames(out)
    assert len(got) == 4
    assert {size for size, _, _ in got} == {(700, 450)}  # the first frame's proportions, at the asked width
    assert [duration for _, duration, _ in got] == [2500] * 4
    expected = [Image.new("RGB", (1, 1), c).getpixel((0, 0)) for c in COLORS[:4]]
    for (_, _, centre), want in zip(got, expected, strict=True):  # each frame's own colour, in order
        assert max(abs(a - b) for a, b in zip(centre, want, strict=True)) <= 8, (centre, want)
    with Image.open(out) as gif:
        assert gif.info.get("loop") == 0  # loops for ever
    assert out.stat().st_size < 200_000


def test_a_tall_frame_is_fitted_onto_the_canvas_not_stretched(tmp_path):
    frames = synthetic_frames(tmp_path, [(800, 400), (800, 1600)])
    out = assemble_gif(frames, tmp_path / "loop.gif", width=400)
    with Image.open(out) as gif:
        gif.seek(1)
        tall = gif.convert("RGB")
    assert tall.size == (400, 200)
    # 800 x 1600 scaled to fit 400 x 200 is 100 x 200, centred: white on both sides, the frame's colour inside.
    assert tall.getpixel((20, 100)) == (255, 255, 255) and tall.getpixel((380, 100)) == (255, 255, 255)
    assert tall.getpixel((200, 150)) != (255, 255, 255)


def test_captions_add_a_strip_on_top(tmp_path):
    frames = synthetic_frames(tmp_path, [(800, 400), (800, 400)])
    plain = assemble_gif(frames, tmp_path / "plain.gif", width=400)
    captioned = assemble_gif(frames, tmp_path / "captioned.gif", width=400, captions=["1. Problems", "2. Locate"])
    with Image.open(plain) as a, Image.open(captioned) as b:
        assert b.height == a.height + 36 and b.width == a.width
        strip = b.convert("RGB").crop((0, 0, b.width, 36))
    assert len(strip.getcolors()) > 2  # the dark strip and the text's light pixels


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        assemble_gif([], tmp_path / "x.gif")
    frames = synthetic_frames(tmp_path, [(100, 100)])
    with pytest.raises(ValueError, match="2 captions for 1 frames"):
        assemble_gif(frames, tmp_path / "x.gif", captions=["a", "b"])

"""A terminal's screen as a PNG: what `tmux capture-pane -e -p` printed (text with its colour escapes), drawn
cell by cell with Pillow in DejaVu Sans Mono (the copy matplotlib ships: the same font on every machine; it
has every character the watch draws).

rich reads the escapes (Text.from_ansi) and gives each run of cells its colours; nothing here parses them by hand.
tests/test_watch.py makes docs/watch.png with it from a real terminal during a risky step (WATCH_SCREENSHOT).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from rich.cells import cell_len
from rich.color import Color
from rich.console import Console
from rich.terminal_theme import MONOKAI, TerminalTheme
from rich.text import Text

THEME: TerminalTheme = MONOKAI
FONT_SIZE = 18
MARGIN = 14


@lru_cache(maxsize=None)
def _fonts(size: int):
    import matplotlib
    from PIL import ImageFont

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    regular = ImageFont.truetype(str(folder / "DejaVuSansMono.ttf"), size)
    bold = ImageFont.truetype(str(folder / "DejaVuSansMono-Bold.ttf"), size)
    return regular, bold


def _rgb(color: Color | None, default: tuple[int, int, int], foreground: bool) -> tuple[int, int, int]:
    if color is None or color.is_default:
        return default
    triplet = color.get_truecolor(THEME, foreground=foreground)
    return triplet.red, triplet.green, triplet.blue


def screen_png(captured: str, path: Path, columns: int = 80, rows: int = 24, font_size: int = FONT_SIZE) -> Path:
    """Draw the first `rows` lines of `captured` (ANSI text, one line per terminal row) into a PNG at `path`."""
    from PIL import Image, ImageDraw

    regular, bold = _fonts(font_size)
    cell_w = round(regular.getlength("M"))
    ascent, descent = regular.getmetrics()
    cell_h = ascent + descent + 2
    background = (THEME.background_color.red, THEME.background_color.green, THEME.background_color.blue)
    foreground = (THEME.foreground_color.red, THEME.foreground_color.green, THEME.foreground_color.blue)
    image = Image.new("RGB", (2 * MARGIN + columns * cell_w, 2 * MARGIN + rows * cell_h), background)
    draw = ImageDraw.Draw(image)
    console = Console(width=columns, color_system="truecolor", force_terminal=True, legacy_windows=False)
    lines = captured.split("\n")[:rows]
    for row, line in enumerate(lines):
        text = Text.from_ansi(line, no_wrap=True, end="")
        rendered = console.render_lines(text, console.options.update(width=columns, no_wrap=True), pad=False)
        column = 0
        for segment in rendered[0] if rendered else []:
            style = segment.style
            fg = _rgb(style.color if style else None, foreground, True)
            bg = _rgb(style.bgcolor if style else None, background, False)
            if style is not None and style.reverse:
                fg, bg = bg, fg
            font = bold if style is not None and style.bold else regular
            for character in segment.text:
                width = cell_len(character)
                if column + width > columns:
                    break
                x, y = MARGIN + column * cell_w, MARGIN + row * cell_h
                if bg != background:
                    draw.rectangle([x, y, x + width * cell_w - 1, y + cell_h - 1], fill=bg)
                if not character.isspace():
                    draw.text((x, y + 1), character, font=font, fill=fg)
                column += width
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    return path

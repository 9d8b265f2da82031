"""The Docker commands of a DEMO_COMMANDS.md page, read from the page itself (never a copy that could drift).

A page is `## N. Heading` sections; each command block is a ```bash fence. A block is a Docker block when the line
before its fence starts with "Docker" ("Docker:", "Docker (the variable reaches ...):"); the talk's curl loop is
the block with `while true` and `curl` (the "Watch the API" section, for either variant).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
HEADING = re.compile(r"^## (.+)$", re.M)
# A manage.py migrate that names its target: the lesson step the block applies.
MIGRATE = re.compile(r"manage\.py migrate demoapp (\S+)")


@dataclass(frozen=True)
class Block:
    section: str  # the heading it sits under, e.g. "4. Apply the lesson"
    label: str  # the last line before the fence, e.g. "Docker:" ("" after a blank line)
    text: str  # the commands exactly as written

    @property
    def is_docker(self) -> bool:
        return self.label.startswith("Docker")

    @property
    def is_curl_loop(self) -> bool:
        return "while true" in self.text and "curl " in self.text

    def commands(self) -> list[str]:
        """Its command lines, comments and blank lines left out."""
        lines = []
        for line in self.text.splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith("#"):
                lines.append(command)
        return lines

    def migrations(self) -> list[str]:
        """The migrations it applies (`manage.py migrate demoapp NAME`), in order."""
        return MIGRATE.findall(self.text)


def blocks(markdown: str) -> list[Block]:
    found = []
    for fence in FENCE.finditer(markdown):
        before = markdown[: fence.start()]
        headings = HEADING.findall(before)
        lines = before.rstrip("\n").splitlines()
        label = lines[-1].strip() if lines and before.endswith("\n") and not before.endswith("\n\n") else ""
        found.append(Block(section=headings[-1] if headings else "", label=label, text=fence.group(1)))
    return found


def docker_blocks(markdown: str) -> list[Block]:
    return [block for block in blocks(markdown) if block.is_docker]


def curl_loop(markdown: str) -> Block:
    loops = [block for block in blocks(markdown) if block.is_curl_loop]
    assert len(loops) == 1, f"expected one curl loop, found {len(loops)}"
    return loops[0]


def compose_up_commands(markdown: str) -> list[str]:
    """Every `docker compose up ...` command the page's Docker blocks give (`a && b` counts as two)."""
    found = []
    for block in docker_blocks(markdown):
        for line in block.commands():
            found += [part.strip() for part in line.split("&&") if re.search(r"\bdocker compose up\b", part)]
    return found

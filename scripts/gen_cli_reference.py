"""Write docs/cli.md, the command-line reference, from the ``spikeforge`` argument parser."""

from pathlib import Path

from spikeforge.cli import reference_markdown

if __name__ == "__main__":
    path = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    path.write_text(reference_markdown())
    print(f"wrote {path}")

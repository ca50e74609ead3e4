"""MkDocs hooks of the lrpjax site (``hooks:`` in mkdocs.yml).

* The committed experiment results (``experiments/results/*.md`` and the figures they show) become
  pages of the site under ``experiments/results/``, so the guide links to them and the strict build
  checks those links.
* ``<!-- lrpjax-help: explain -->`` on a line of its own is replaced by the current ``lrpjax explain
  --help`` text (``<!-- lrpjax-help: -->`` by ``lrpjax --help``), taken from the parser itself, so the
  command-line page never falls behind the options. The text is formatted 90 columns wide whatever
  the terminal.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path("experiments") / "results"
_HELP = re.compile(r"^<!-- lrpjax-help:\s*([\w-]*)\s*-->$", re.MULTILINE)


def on_files(files, config):
    """Adds the results READMEs and tables (``.md``) and every figure (``.png``) of experiments/results/."""
    for path in sorted((ROOT / RESULTS).rglob("*")):
        if path.suffix in (".md", ".png") and path.is_file():
            files.append(File(path.relative_to(ROOT).as_posix(), str(ROOT), config["site_dir"],
                              config["use_directory_urls"]))
    return files


def _parser_for(command: str) -> argparse.ArgumentParser:
    from lrpjax.app.cli import build_parser

    parser = build_parser()
    if not command:
        return parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            if command not in action.choices:
                raise ValueError(f"lrpjax has no sub-command {command!r}; it has {sorted(action.choices)}.")
            return action.choices[command]
    raise ValueError("the lrpjax parser has no sub-commands.")


def help_text(command: str) -> str:
    """``lrpjax [command] --help`` as printed on a terminal 90 columns wide."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "90"
    try:
        return _parser_for(command).format_help().rstrip()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def on_page_markdown(markdown, page, config, files):
    """Replaces every ``<!-- lrpjax-help: COMMAND -->`` line by that command's help in a text block."""
    return _HELP.sub(lambda match: f"```text\n{help_text(match.group(1))}\n```", markdown)

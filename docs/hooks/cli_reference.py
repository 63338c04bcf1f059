"""MkDocs hook: render the command-line reference from argparse at build time.

``docs/reference/cli.md`` holds the marker ``<!-- cli-reference -->``; this hook replaces it
with each sub-command's usage and options, taken from ``medseg.cli.main.build_parser()``, so the
page cannot drift from the code. Only argparse parsers are built; no command runs.
"""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _text(text: str) -> str:
    """Help text as a Markdown table cell or paragraph: '<' must not start an HTML tag."""
    return _cell(text).replace("<", "&lt;")


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().split()).removeprefix("usage: ")


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += " " + formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
        else:
            name = formatter._format_args(action, formatter._get_default_metavar_for_positional(action))
        help_text = formatter._expand_help(action) if action.help else ""
        rows.append(f"| `{_cell(name)}` | {_text(help_text)} |")
    if not rows:
        return []
    return ["| argument | meaning |", "|---|---|", *rows, ""]


def render() -> str:
    os.environ.setdefault("COLUMNS", "100")  # stable argparse wrapping
    from medseg.cli.main import build_parser

    parser = build_parser()
    out = ["## `medseg`", "", _text(parser.description or ""), "", "```text", _usage(parser), "```", ""]
    out += _arguments(parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        out += [f"## `medseg {name}`", ""]
        if command.description:
            out += [_text(command.description), ""]
        out += ["```text", _usage(command), "```", ""]
        out += _arguments(command)
        if command.epilog:
            out += ["```text", command.epilog.strip(), "```", ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == "reference/cli.md" and MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown

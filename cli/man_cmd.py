"""``nwc man``: the manual page, written from the commands' own help so it never drifts.

``nwc man | man -l -`` reads it; ``nwc man > ~/.local/share/man/man1/nwc.1`` installs it.
"""

from __future__ import annotations

import datetime
import inspect

import click

from .. import __version__


def _roff(text: str) -> str:
    """Escape text for roff: backslashes, dashes, and a leading dot or quote on a line;
    docstring paragraphs become .PP paragraphs."""
    out: list[str] = []
    for para in inspect.cleandoc(text).split("\n\n"):
        line = " ".join(para.split()).replace("\\", "\\e").replace("-", "\\-")
        if out:
            out.append(".PP")
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def render(group: click.Group) -> str:
    """A man(7) page for ``group`` and its sub-commands."""
    ctx = click.Context(group, info_name="nwc")
    today = datetime.date.today().isoformat()
    lines = [f'.TH NWC 1 "{today}" "nwc {__version__}" "User Commands"', ".SH NAME",
             "nwc \\- neural waveform codec: encode audio to .nwc streams and back",
             ".SH SYNOPSIS", ".B nwc", "COMMAND [OPTIONS] [ARGS]...", ".SH DESCRIPTION",
             _roff(group.help or ""), ".SH COMMANDS"]
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx)
        lines += [".SS " + _roff(" ".join(cmd.collect_usage_pieces(sub)).join(
            [f"nwc {name} ", ""])), _roff(cmd.help or "")]
        for p in cmd.get_params(sub):
            rec = p.get_help_record(sub)
            if rec is None or not rec[1]:
                continue
            lines += [".TP", f"\\fB{_roff(rec[0])}\\fR", _roff(rec[1])]
    lines += [".SH EXIT STATUS", "0 success, 1 bad data or runtime failure, 2 usage error.",
              ".SH ENVIRONMENT", ".TP", "\\fBNWC_WEIGHTS\\fR",
              "Folders (os.pathsep-separated) searched for tiers before the shipped ones.",
              ".TP", "\\fB_NWC_COMPLETE\\fR",
              "Shell completion: eval \"$(_NWC_COMPLETE=bash_source nwc)\" (zsh_source, "
              "fish_source).", ".SH SEE ALSO", "README.md and docs/ in the nwc source."]
    return "\n".join(lines) + "\n"


@click.command("man")
@click.pass_context
def man(ctx: click.Context) -> None:
    """Print the manual page (roff): `nwc man | man -l -`."""
    group = ctx.find_root().command
    assert isinstance(group, click.Group)  # man is a sub-command of the nwc group
    click.echo(render(group), nl=False)

"""The ``nwc`` command group: every sub-command, registered here and only here.

Each command is a module that imports ``common.py`` and ``nwc.codec`` and never this one, so
the commands form no import cycle and a new command is one module plus one line below.
Arguments and I/O only: the codec lives in ``nwc.codec`` and the byte format in
``nwc.formats``.
"""

from __future__ import annotations

import click

from .. import __version__
from ..formats import container as fmt
from .decode_cmd import decode
from .encode_cmd import encode
from .eval_cmd import eval_command
from .info_cmd import info
from .integrity_cmd import test_cmd
from .man_cmd import man
from .stdio import install_signal_handlers
from .tag_cmd import tag
from .tiers_cmd import tiers_cmd
from .train_cmd import train
from .truncate_cmd import truncate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version",
                      message=f"nwc {__version__} (container format {fmt.FORMAT_VERSION})")
def cli() -> None:
    """nwc: neural waveform codec. Encode audio to .nwc streams and back.

    IN and OUT may be `-` for stdin/stdout, so nwc works in pipes:
    `arecord -f S16_LE -r 16000 | nwc encode - - | nwc decode - - | aplay`.
    """


for _command in (encode, decode, info, tiers_cmd, train, eval_command, truncate, test_cmd,
                 tag, man):
    cli.add_command(_command)


def main() -> None:
    """Console entry point."""
    install_signal_handlers()
    cli(prog_name="nwc")


if __name__ == "__main__":
    main()

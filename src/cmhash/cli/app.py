"""The ``cmhash`` click group, its error handling and the option parsers every command shares."""
from __future__ import annotations

import sys
import warnings

import click

from ..codes import check_code_length
from ..overrides import parse_pairs
from ..registry import ALL
from .. import env
from ..utils import DISK_ERRNOS, CmhashError, disk_error


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CmhashError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(2)
        except OSError as e:  # a write the library does not name itself: a full or read-only disk, still one line
            if e.errno not in DISK_ERRNOS:
                raise
            click.secho(f"error: {disk_error(e, e.filename or '.', 'output')}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="cmhash")
def main():
    """cmhash: deep cross-modal hashing (train, evaluate, search binary codes for images and texts).

    Environment: CMHASH_CACHE_DIR (feature cache folder), CMHASH_THREADS (search threads),
    CMHASH_KERNEL (scalar, avx2 or avx512: the scan path); each is checked before any command runs."""
    warnings.simplefilter("default")
    from ..kernels import kernel_cap

    env.check()
    kernel_cap()  # CMHASH_KERNEL naming a path this CPU lacks


def code_lengths(value: str) -> list[int]:
    """``--bits 16,32,64`` -> [16, 32, 64]: each checked (``codes.check_code_length``), no repeats."""
    try:
        bits = [int(b) for b in str(value).split(",") if b.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give code lengths like 16,32,64") from None
    if not bits:
        raise click.BadParameter(f"{value!r}: give code lengths like 16,32,64")
    try:
        for b in bits:
            check_code_length(b)
    except CmhashError as e:
        raise click.BadParameter(str(e)) from None
    return list(dict.fromkeys(bits))


def bits_option(help: str):
    """``--bits/-b K``: one code length, checked (``codes.check_code_length``), or None."""
    def check(ctx, param, value):
        if value is None:
            return None
        try:
            return check_code_length(value)
        except CmhashError as e:
            raise click.BadParameter(str(e)) from None

    return click.option("--bits", "-b", type=int, default=None, callback=check, help=help)


def key_values(pairs, what: str = "option") -> dict:
    """``key=value`` options (--param, --data-option), values parsed as by ``--set``."""
    return parse_pairs(pairs, what)


def registry_choice(kind: str) -> click.Choice:
    """A click choice of the names registered under ``kind`` (``registry.ALL``), read when used."""
    class _Lazy(click.Choice):
        def __init__(self):
            super().__init__([])

        def convert(self, value, param, ctx):
            self.choices = ALL[kind].names()
            return super().convert(value, param, ctx)

        def get_metavar(self, param, *args, **kwargs):
            return f"[{'|'.join(ALL[kind].names())}]"

    return _Lazy()


@main.command("list")
def list_cmd():
    """Show the registered methods, datasets, backbones and index backends."""
    for title, reg in ALL.items():
        click.secho(title, bold=True)
        for name, doc in reg.describe().items():
            click.echo(f"  {name:<20} {doc}")

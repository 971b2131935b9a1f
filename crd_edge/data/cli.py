"""``crd-edge data``: get training data (download a standard set, or make edge pairs).

Importing this module stays light (typer only): the work modules load inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from crd_edge.errors import UserError

data_app = typer.Typer(
    no_args_is_help=True,
    help="Get training data: download the standard CycleGAN/pix2pix sets, or make "
         "edges->photo pairs from your own photos.",
)


@data_app.command("list")
def list_datasets() -> None:
    """List the data sets `crd-edge data download` knows, with layout and approximate size."""
    from crd_edge.data.download import render_list

    typer.echo(render_list())


@data_app.command()
def download(
    name: Optional[str] = typer.Argument(None, help="Data set, e.g. horse2zebra or pix2pix/facades "
                                                    "(`crd-edge data list` lists them)."),
    dest: Path = typer.Option(Path("data"), "--out", "--dest", help="Parent folder; the set lands in OUT/NAME/ "
                                                                      "(--out as in every command; --dest: old name)."),
    mirror: Optional[str] = typer.Option(None, help="Server root with the same paths as "
                                                    "https://efrosgans.eecs.berkeley.edu "
                                                    "(default: $CRD_EDGE_DATA_MIRROR, else that)."),
    force: bool = typer.Option(False, "--force", help="Download again and replace an existing folder."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Download a CycleGAN or pix2pix data set (resumable) and extract it for `distill --data`."""
    from crd_edge.data.download import download_dataset

    if not name:
        raise UserError("data download needs NAME, e.g. horse2zebra (see `crd-edge data list`)")
    result = download_dataset(name, dest, mirror=mirror, force=force, quiet=quiet)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    if not result.skipped:
        resumed = f" (resumed after {result.resumed_from} bytes)" if result.resumed_from else ""
        typer.echo(f"{result.key}: {result.archive_bytes} bytes from {result.url}{resumed}")
    layout = result.layout or "unrecognised"
    typer.echo(f"{result.key}: {result.path} (layout: {layout}); train with: "
               f"crd-edge distill --data {result.path}")


@data_app.command()
def pairs(
    src: Path = typer.Argument(..., help="Folder of photos (not searched recursively)."),
    edges: bool = typer.Option(True, "--edges", help="Make A from the photo's Canny edges (edges2shoes "
                                                     "style): the one kind so far, and the default."),
    out: Path = typer.Option(..., help="Output folder: OUT/train and OUT/test with A|B images."),
    size: int = typer.Option(256, help="Side of each half (photos are resized and centre-cropped)."),
    test_fraction: float = typer.Option(0.1, help="Share of files for OUT/test (deterministic split)."),
    format_: str = typer.Option("jpg", "--format", help="jpg | png"),
    force: bool = typer.Option(False, "--force", help="Write into an OUT that already holds pairs."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Make a pix2pix aligned set (A | B side by side) from a folder of photos."""
    del edges  # edges are the only kind of input so far; the flag stays valid for scripts that pass it
    from crd_edge.data.pairs import make_edge_pairs

    result = make_edge_pairs(src, out, size=size, test_fraction=test_fraction, fmt=format_,
                             force=force, quiet=quiet)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    if result.skipped.total:
        typer.echo(f"note: {result.skipped.summary()}", err=True)
    typer.echo(f"{result.train} train and {result.test} test edges|photo pairs in {result.out}; "
               f"train with: crd-edge distill --data {result.out}")

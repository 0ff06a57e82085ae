"""``zoo list``, ``zoo info``, ``zoo card``: the catalogue, answered without importing torch.

Only ``zoo list --source torchvision|timm|all`` imports those libraries, to list their full catalogues.
"""

from __future__ import annotations

import json
from importlib import resources

import click

from zoo.registry import Entry, catalog
from zoo.registry.catalog import SOURCES, list_external, list_models
from zoo.registry.errors import RegistryError
from zoo.registry.schema import Preprocessing, entry_to_dict

__all__ = ["list_cmd", "info_cmd", "card_cmd", "describe_input"]


def describe_input(p: Preprocessing) -> str:
    """How an image reaches the net's input, in words (``zoo info``, ``zoo import-caffe``)."""
    size = f"{p.crop[0]}x{p.crop[1]}"
    if p.crop_mode == "squash" and p.resize == max(p.crop):
        how = f"whole image resized to {size}"
    elif p.crop_mode == "squash":
        how = f"whole image resized to {p.resize}x{p.resize}, centre crop {size}"
    elif p.crop_mode == "border":
        how = f"longer side resized to {p.resize}, padded with the mean colour (or cropped) to {size}"
    else:
        how = f"resize {p.resize}, centre crop {size}"
    return f"{'x'.join(map(str, p.input_size))}, {how} ({p.interpolation}{'' if p.antialias else ', no antialias'})"


def _top1(entry: Entry) -> str:
    metric = entry.metric("top1") or entry.metric("acc@1") or entry.metric("accuracy")
    return f"{metric.value:.1f}" if metric else "-"


def _params(entry: Entry) -> str:
    if entry.params is None:
        return "-"
    return f"{entry.params / 1e6:.1f}M" if entry.params >= 1e5 else f"{entry.params / 1e3:.1f}K"


def _cached(entry: Entry) -> bool:
    """True when every file of the entry is in the cache (a path check: `zoo cache verify` hashes)."""
    from zoo import store

    return bool(entry.files) and all(store.find(entry.name, f.filename) for f in entry.files)


@click.command("list")
@click.argument("pattern", required=False)
@click.option("--source", type=click.Choice(SOURCES), default="curated", show_default=True,
              help="curated: every built-in and local entry; caffe/torchvision/timm/zoo/local: one group; "
                   "torchvision, timm and all also list those libraries' full catalogues (imports them: seconds).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one entry per line.")
def list_cmd(pattern: str | None, source: str, as_json: bool) -> None:
    """List models, optionally matching PATTERN (fnmatch; a bare word matches anywhere in the name).

    \b
    Examples:
      zoo list                      the curated catalogue
      zoo list 'resnet*'            names starting with resnet
      zoo list --source caffe       the Caffe Model Zoo mirror
      zoo list --source timm vit    timm's whole pretrained catalogue, filtered
    """
    entries = list_models(pattern, source=source)
    externals = list_external(pattern, source=source) if source in ("torchvision", "timm", "all") else []
    if externals:  # drop library names a curated entry already has, by name or alias
        curated = {name for e in catalog() for name in (e.name, *e.aliases)}
        externals = [x for x in externals if x.name not in curated]
    if as_json:
        for e in entries:
            click.echo(json.dumps({"name": e.name, "source": e.source, "license": e.license, "top1": _top1(e),
                                   "params": e.params, "default": e.default, "cached": _cached(e),
                                   "curated": True}))
        for x in externals:
            click.echo(json.dumps({"name": x.name, "source": x.source, "curated": False}))
        return
    if not entries and not externals:
        click.echo(f"No model matches {pattern!r} in source {source!r}. Try `zoo list --source all {pattern or ''}`.",
                   err=True)
        raise SystemExit(1)
    width = max([len(e.name) for e in entries] + [len(x.name) for x in externals[:1]] + [4])
    if entries:
        click.echo(f"{'NAME':<{width}}  {'SOURCE':<11}  {'TOP-1':>5}  {'PARAMS':>7}  {'LICENSE':<18}  CACHED")
        for e in entries:
            mark = "*" if e.default else " "
            click.echo(f"{e.name:<{width}}{mark} {e.source:<11}  {_top1(e):>5}  {_params(e):>7}  "
                       f"{e.license:<18}  {'yes' if _cached(e) else ''}")
        click.echo(f"\n{len(entries)} curated entries (* = the default tag of its arch).")
    if externals:
        click.echo(f"\n{len(externals)} more names in the full {source} catalogue(s) (not curated):")
        for x in externals:
            click.echo(f"  {x.name}  [{x.source}]")


@click.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the whole entry as JSON.")
def info_cmd(name: str, as_json: bool) -> None:
    """Show everything the registry knows about NAME: sources, checksums, licence, preprocessing,
    labels, reported accuracy.

    \b
    Examples:
      zoo info bvlc_googlenet
      zoo info resnet50.tv2_in1k --json
    """
    from zoo.external import resolve_entry  # timm/torchvision are imported only on a curated miss

    entry = resolve_entry(name)
    if as_json:
        data = entry_to_dict(entry)
        data["cached"] = _cached(entry)
        data["origin_file"] = entry.origin_file
        click.echo(json.dumps(data, indent=2))
        return
    p, h = entry.preprocessing, entry.head
    out = [f"{entry.name}" + (f"  (aliases: {', '.join(entry.aliases)})" if entry.aliases else ""),
           f"  {entry.description}" if entry.description else "",
           f"  architecture : {entry.architecture.library}:{entry.architecture.builder}"
           + (f" {dict(entry.architecture.kwargs)}" if entry.architecture.kwargs else ""),
           f"  licence      : {entry.license}" + (f"  ({entry.license_note})" if entry.license_note else ""),
           f"  origin       : {entry.origin}" if entry.origin else "",
           f"  paper        : {entry.paper}" if entry.paper else "",
           f"  params       : {entry.params:,}" if entry.params else "",
           f"  input        : {describe_input(p)}",
           f"  normalise    : {p.channel_order}, x{p.scale:g}, mean {list(p.mean)}"
           + (f" (mean file: {p.mean_file})" if p.mean_file else "") + f", std {list(p.std)}",
           (f"  head         : {h.num_classes} classes" if h.num_classes else
            "  head         : none: a feature backbone (`zoo extract` gives its features; `zoo finetune` "
            "puts a classifier on it)")
           + (f", labels {h.labels if isinstance(h.labels, str) else 'inline'}" if h.labels else "")
           + (f", classifier {h.classifier}" if h.classifier else ""),
           ]
    for m in entry.metrics:
        out.append(f"  reported     : {m.metric} {m.value:g} on {m.dataset}"
                   + (f" ({m.protocol})" if m.protocol else "") + (f" [{m.source}]" if m.source else ""))
    if entry.recipe:
        out.append(f"  recipe       : {entry.recipe}")
    for f in entry.files:
        c = f.checksum
        digest = ("none (the Hub's LFS sha256 is checked)" if c is None else
                  f"{c.algorithm}{' prefix' if c.prefix else ''} {c.value}"
                  + (f" [{c.trust}]" if c.trust != "publisher" else "") + (f" - {c.note}" if c.note else ""))
        out.append(f"  file         : {f.role}: {f.filename} ({f.format}"
                   + (f", {f.size:,} bytes" if f.size else "") + ")")
        out.append(f"    checksum   : {digest}")
        for s in f.sources:
            out.append(f"    source     : {s.describe()}")
    from zoo import store

    found = [store.find(entry.name, f.filename) for f in entry.files]
    where = found[0].parent if found and found[0] else store.entry_folder(entry.name)
    out.append(f"  cached       : {'yes' if found and all(found) else 'no'} ({where})")
    if entry.card:
        out.append(f"  card         : zoo card {entry.name}")
    out.append(f"  defined in   : {entry.origin_file}")
    click.echo("\n".join(line for line in out if line))


@click.command("card")
@click.argument("name")
def card_cmd(name: str) -> None:
    """Print the model card of NAME (Markdown with front matter).

    \b
    Example:
      zoo card bvlc_googlenet | less
    """
    entry = catalog().get(name)
    if not entry.card:
        raise RegistryError(f"entry {entry.name!r} has no model card; `zoo info {entry.name}` shows what the "
                            "registry knows.", entry=entry.name, field="card")
    try:
        text = (resources.files("zoo.model_cards") / entry.card).read_text("utf-8")
    except FileNotFoundError as err:
        raise RegistryError(f"its card {entry.card!r} is missing from model_cards/; reinstall the package",
                            entry=entry.name, field="card") from err
    click.echo(text, nl=not text.endswith("\n"))

"""``zoo extract`` and ``zoo similar``: image features from the command line, and a search over them.

Thin: parse, call ``zoo.extract.extract_folder`` / ``zoo.extract.similar``, print. torch and the
extractor are imported inside the commands, so ``zoo --help`` stays fast.
"""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["extract_cmd", "similar_cmd"]


@click.command("extract")
@click.argument("model")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="Features file to write (.npz); its index goes beside it (.csv).")
@click.option("--layer", default="pool", show_default=True,
              help="Layer to read: pool (pre-logits), logits, or a module path (`zoo info MODEL`, "
                   "Extractor.layers()).")
@click.option("--pool", type=click.Choice(["avg", "max", "none"]), default="avg", show_default=True,
              help="How an intermediate layer's map becomes one row: spatial average, max, or kept whole.")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=None,
              help="Images per forward pass (default: 64 on a GPU; on the CPU about 2^19 input pixels, "
                   "8 at 224 px).")
@click.option("--workers", "-j", "num_workers", type=click.IntRange(min=0), default=None,
              help="Decoding processes (default: 1 per 4 cores on the CPU, all cores but one with a GPU).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Images per resumable chunk.")
@click.option("--draft", is_flag=True,
              help="Decode big JPEGs at reduced size (never below the model's resize): faster, "
                   "features within ~0.3% of a full decode.")
@click.option("--amp", is_flag=True, help="bfloat16 autocast (GPU, or a CPU with bf16 instructions): about 2x "
              "faster, features within ~1e-2 of fp32.")
@click.option("--backend", type=click.Choice(["auto", "torch", "torchscript", "onnxruntime"]), default="auto",
              show_default=True,
              help="auto: a frozen TorchScript graph on the CPU in fp32, else eager torch; onnxruntime: export the "
                   "layer to ONNX first (checked against the model) and run it there, on the CPU; the same "
                   "features.")
@click.option("--restart", is_flag=True, help="Discard what an earlier run made and start over.")
@click.option("--seed", type=int, default=None,
              help="Seed the random weights of a model without a weights file (*.scratch), so that an "
                   "interrupted run can be resumed.")
@click.option("--no-recursive", is_flag=True, help="Do not walk sub-folders.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def extract_cmd(model: str, inputs: tuple[str, ...], out: str, chunk_size: int, restart: bool, seed: int | None,
                no_recursive: bool, as_json: bool, quiet: bool, **extractor_options: Any) -> None:
    """Extract features of every image in INPUTS with MODEL into --out.

    MODEL is a registry name (`zoo list`) or a model folder (`zoo finetune`, `zoo train`,
    `zoo import-caffe`). INPUTS are folders, image files, or .txt lists (one path a line).
    The model's own preprocessing is applied. Unreadable files are skipped and listed in
    OUT.failed.csv with the reason; an input that does not exist is an error. Started again, a run
    reuses what the same weights made from the same files (an interrupted run's chunks, or OUT
    itself) and extracts the rest: changed files, or everything if the weights behind MODEL changed.
    Under torchrun each process extracts a share and rank 0 merges them in input order.

    \b
    Examples:
      zoo extract resnet50 photos/ --out feats.npz
      zoo extract runs/pets photos/ more.txt --out pets.npz --layer layer3
      torchrun --standalone --nproc-per-node 4 -m zoo.cli extract resnet50 photos/ --out feats.npz

    \b
    Reading the result:
      numpy:  d = np.load("feats.npz"); d["features"], d["paths"]
      pandas: pd.read_csv("feats.csv")   (row,path; row i is d["features"][i])
      zoo:    zoo.extract.load_features("feats.npz")
    """
    from zoo.extract import escape_path, extract_folder

    # --layer, --pool, --batch-size, --workers, --device, --draft, --amp, --backend are the Extractor's own
    # options.
    options = dict(extractor_options, pool=None if extractor_options["pool"] == "none" else extractor_options["pool"],
                   draft=extractor_options["draft"] or None)
    summary = extract_folder(model, list(inputs), out, chunk_size=chunk_size, resume=not restart,
                             progress=not quiet and not as_json, recursive=not no_recursive, seed=seed, **options)
    if not as_json:
        for note in summary.notes:
            click.echo(escape_path(note), err=True)
    if not summary.merged:
        if not as_json:
            click.echo(f"This rank's share is written to {summary.out}.parts; rank 0 merges it.", err=True)
        return
    if as_json:
        click.echo(json.dumps(summary.to_dict()))
        return
    resumed = f", {summary.resumed} from an earlier run" if summary.resumed else ""
    click.echo(f"Extracted {summary.extracted} of {summary.images} images ({summary.dim} values each, "
               f"layer {options['layer']}{resumed}) in {summary.seconds:.1f} s ({summary.images_per_s:.1f} img/s).")
    click.echo(f"Wrote {escape_path(str(summary.out))} and its index {escape_path(str(summary.index))}.")
    if summary.failed:
        click.echo(f"Skipped {summary.failed} unreadable file{'s' if summary.failed != 1 else ''}, listed with "
                   f"the reason in {summary.failed_index}:", err=True)
        for path, reason in summary.failures[:5]:
            click.echo(f"  {escape_path(path)}: {escape_path(reason)}", err=True)
        if summary.failed > 5:
            click.echo(f"  ... and {summary.failed - 5} more", err=True)


@click.command("similar")
@click.argument("index", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", "-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per query image.")
def similar_cmd(index: str, images: tuple[str, ...], top_k: int, device: str, as_json: bool) -> None:
    """Find the images in INDEX (made by `zoo extract`) most like each of IMAGES.

    The query images go through the same model, layer and pooling the index was built with (the index
    file names them); neighbours are ranked by cosine similarity (1.0 = same direction).

    \b
    Examples:
      zoo extract resnet50 photos/ --out photos.npz
      zoo similar photos.npz query.jpg --top-k 10
    """
    from zoo.extract import collect_inputs, escape_path, similar

    queries, _ = collect_inputs(images)  # folders expand to their images, one result list each
    results = similar(index, queries, top_k=top_k, device=device)
    for query, hits in zip(queries, results):
        if as_json:
            click.echo(json.dumps({"query": query,
                                   "results": [{"path": p, "similarity": round(s, 6)} for p, s in hits]}))
            continue
        click.echo(f"{escape_path(query)}:")
        for rank, (path, score) in enumerate(hits, 1):
            click.echo(f"  {rank:>2}. {score:6.3f}  {escape_path(path)}")

"""Write ``model_cards/<entry name>.md`` for the built-in caffe, torchvision and timm entries.

A card is rendered from its registry entry, so the two cannot disagree: the front matter (Hugging Face
model-card style) carries the licence, datasets, metrics and the ``zoo_entry`` name; the prose says what
the weights are, how to use them, how to preprocess, the limits (licence caveats, checksum trust) and
the citation. ``tests/registry/test_schema.py`` checks every card against its entry.

Cards for the zoo's own entries (``registry/entries/zoo.json``) are written by their owner, not here.
Run with ``.venv/bin/python tools/gen_cards.py`` after ``tools/gen_registry.py``; commit the cards.
Standard library only (imports ``zoo.registry``, never torch).
"""

from __future__ import annotations

import json
from pathlib import Path

from zoo.registry import catalog
from zoo.registry.schema import Entry

ROOT = Path(__file__).resolve().parent.parent
CARDS = ROOT / "model_cards"
LIBRARIES = ("caffe", "torchvision", "timm")

# Hugging Face's licence identifiers for the SPDX ids the registry allows; the rest become
# "other" with the registry's own word in license_name.
HF_LICENSE = {"Apache-2.0": "apache-2.0", "BSD-2-Clause": "bsd-2-clause", "BSD-3-Clause": "bsd-3-clause",
              "MIT": "mit", "CC-BY-4.0": "cc-by-4.0", "CC-BY-NC-4.0": "cc-by-nc-4.0", "CC-BY-SA-4.0": "cc-by-sa-4.0"}

# Checked against the installed timm's pretrained_cfg: both exist as pretrained tags.
BASE_MODEL = {
    "convnext_tiny.in12k_ft_in1k": "timm/convnext_tiny.in12k",
    "vit_small_patch16_224.augreg_in21k_ft_in1k": "timm/vit_small_patch16_224.augreg_in21k",
}

TRUST_WORDS = {
    "publisher": "published by the file's authors; a mismatch deletes the download and raises an error",
    "third-party": "published by a third party (not the authors); checked as strictly as a publisher's value",
    "suspect": ("published, but with a known reason to doubt it; the fetcher checks it and reports a mismatch "
                "with the actual digest, but does not reject the file"),
    "local": "written by the zoo itself",
}


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def front_matter(entry: Entry) -> str:
    lines = ["---"]
    hf = HF_LICENSE.get(entry.license)
    if hf:
        lines.append(f"license: {hf}")
    else:
        lines += ["license: other", f"license_name: {_q(entry.license)}"]
    lines.append("library_name: zoo")
    lines.append("pipeline_tag: image-classification")
    lines.append("tags:")
    lines += [f"- {_q(t)}" for t in entry.tags]
    lines += ["datasets:", "- imagenet-1k"]
    if entry.name in BASE_MODEL:
        lines.append(f"base_model: {BASE_MODEL[entry.name]}")
    lines.append(f"zoo_entry: {entry.name}")
    if entry.metrics:
        lines += ["metrics:", "- accuracy", "model-index:", f"- name: {entry.name}", "  results:",
                  "  - task:", "      type: image-classification", "    dataset:",
                  "      name: ImageNet-1k", "      type: imagenet-1k", "    metrics:"]
        for m in entry.metrics:
            lines += [f"    - type: {m.metric}", f"      value: {m.value!r}", f"      name: {_q(m.protocol)}"]
            if m.source:
                lines.append(f"      source: {_q(m.source)}")
    lines.append("---")
    return "\n".join(lines)


def _preprocessing(entry: Entry) -> list[str]:
    p = entry.preprocessing
    h, w = p.crop
    out = [f"- Resize the shorter side to {p.resize} pixels ({p.interpolation}), then centre-crop {h}x{w}.",
           f"- Channel order {p.channel_order}; pixel values scaled to "
           + ("0-255 (Caffe convention)." if p.scale == 255.0 else "0-1." if p.scale == 1.0 else f"x{p.scale}.")]
    if p.mean_file:
        spec = entry.file(p.mean_file)
        out.append(f"- Subtract the per-pixel mean image `{spec.filename}` (file role `{p.mean_file}`), "
                   "taken at the crop's offset.")
        if any(p.mean):
            out.append(f"- Its per-channel average, for callers without the file: {list(p.mean)} "
                       f"({p.channel_order} order).")
    else:
        out.append(f"- Subtract the mean {list(p.mean)} ({p.channel_order} order).")
    out.append(f"- Divide by the standard deviation {list(p.std)}.")
    out.append("- `zoo.load(...)` attaches this as `model.transforms`; use it rather than re-implementing it.")
    return out


def _files(entry: Entry) -> list[str]:
    out = []
    for f in entry.files:
        out.append(f"- `{f.filename}` (role `{f.role}`, format {f.format})")
        for s in f.sources:
            out.append(f"  - source: {s.describe()}")
        c = f.checksum
        if c is None:
            out.append("  - checksum: the Hub's LFS sha256 (its etag), checked on download and pinned in the cache")
        else:
            kind = f"{c.algorithm} prefix" if c.prefix else c.algorithm
            out.append(f"  - checksum: {kind} `{c.value}`; trust `{c.trust}`: {TRUST_WORDS[c.trust]}")
            if c.note:
                out.append(f"  - note: {c.note}")
    return out


def body(entry: Entry) -> str:
    a, h = entry.architecture, entry.head
    lines = [f"# {entry.name}", "", entry.description, ""]
    lines += ["## Model details", ""]
    lines.append(f"- Architecture: `{a.builder}` from {a.library}"
                 + (f" with {json.dumps(a.kwargs)}" if a.kwargs else ""))
    if entry.params:
        lines.append(f"- Parameters: {entry.params:,}")
    lines.append(f"- Input: {entry.preprocessing.input_size[0]} x {entry.preprocessing.input_size[1]} x "
                 f"{entry.preprocessing.input_size[2]}")
    lines.append(f"- Classes: {h.num_classes} (label set `{h.labels}`)")
    lines.append(f"- Classifier: `{h.classifier}`" if h.classifier else
                 "- Classifier: none recorded (see the description)")
    if entry.aliases:
        lines.append(f"- Aliases: {', '.join(f'`{x}`' for x in entry.aliases)}")
    lines.append(f"- Default for `{entry.arch}`: {'yes' if entry.default else 'no'}")
    for label, value in (("Origin", entry.origin), ("Paper", entry.paper), ("Training recipe", entry.recipe)):
        if value:
            lines.append(f"- {label}: {value}")
    lines += ["", "### Files", ""] + _files(entry)
    lines += ["", "## Intended use", "",
              "Image classification over the 1000 ImageNet-1k (ILSVRC-2012) classes, and a pretrained "
              "starting point for feature extraction and fine-tuning on other image data.", "",
              "```python", "import zoo", f'model = zoo.load("{entry.name}")   # eval mode, weights verified',
              "logits = model(model.transforms(image).unsqueeze(0))", "```", ""]
    if a.library == "caffe":
        lines += ["The original `.caffemodel` is fetched and verified as published; the zoo converts it to a "
                  "PyTorch graph once and caches the result as safetensors.", ""]
    lines += ["## Preprocessing", ""] + _preprocessing(entry)
    if entry.metrics:
        lines += ["", "## Evaluation", "", "| metric | value | protocol | source |", "| --- | --- | --- | --- |"]
        lines += [f"| {m.metric} | {m.value} | {m.protocol} | {m.source} |" for m in entry.metrics]
        lines += ["", "Figures are as reported by their source, under that source's protocol; they were not "
                  "re-measured by the zoo."]
    lines += ["", "## Limitations", ""]
    lines.append(f"- Licence: `{entry.license}`." + (f" {entry.license_note}" if entry.license_note else ""))
    trusts = {f.checksum.trust for f in entry.files if f.checksum}
    if "suspect" in trusts:
        lines.append("- A published checksum for this entry is suspect (see Files): verify the file against a "
                     "trusted copy before relying on it.")
    if "third-party" in trusts:
        lines.append("- Some checksums come from a third-party mirror, not the authors (see Files).")
    if any(f.checksum and f.checksum.prefix for f in entry.files):
        lines.append("- The publisher gives only a sha256 prefix; the full digest is pinned on first download.")
    if any(s.kind == "hf" and s.hf_revision in (None, "main") for f in entry.files for s in f.sources):
        lines.append("- The Hub revision is the branch `main`, not a commit: the file can change upstream. The "
                     "first verified download pins its sha256 in the cache.")
    lines.append("- Trained on ImageNet-1k: its classes, label noise and the biases of its web-collected photos "
                 "carry over; accuracy on other domains is not measured here.")
    if entry.citation:
        lines += ["", "## Citation", "", "```bibtex", entry.citation, "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    written = 0
    for entry in catalog():
        if entry.library not in LIBRARIES or entry.collection != "builtin":
            continue
        if entry.card != f"{entry.name}.md":
            raise SystemExit(f"{entry.name}: card field is {entry.card!r}, expected {entry.name}.md")
        (CARDS / entry.card).write_text(front_matter(entry) + "\n\n" + body(entry), encoding="utf-8")
        written += 1
    print(f"wrote {written} cards to {CARDS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""Write ``registry/entries/zoo.json`` and the model cards of the zoo's own entries.

The entries are the reference architectures (``<arch>.scratch``: no weights, built by ``zoo.archs``,
preprocessing for 28x28 grayscale Fashion-MNIST) and the embedded default ``lenet.fmnist5``, whose
weights, checksum, metrics and exact command come from ``tools/embedded.json`` (written by
``tools/make_embedded.py``). Cards are rendered from the entries so the two cannot disagree.

Run: ``.venv/bin/python tools/gen_zoo_entries.py`` (imports torch to count parameters).
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = ROOT / "registry" / "entries" / "zoo.json"
CARDS = ROOT / "model_cards"
EMBEDDED = Path(__file__).resolve().parent / "embedded.json"

FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot"]
# Computed over the 60,000 training images (zoo.finetune.datasets.dataset_stats): 0.2860406, 0.3530242.
FMNIST_PRE = {"input_size": [1, 28, 28], "resize": 28, "interpolation": "bilinear", "mean": [0.2860],
              "std": [0.3530], "channel_order": "L", "scale": 1.0}
LICENSE_NOTE = ("The architecture code is the zoo's (BSD-3-Clause). No weights ship with this entry: "
                "`zoo train` makes them.")
FMNIST_CITE = ("@article{xiao2017fashion,\n  title   = {Fashion-MNIST: a Novel Image Dataset for Benchmarking "
               "Machine Learning Algorithms},\n  author  = {Xiao, Han and Rasul, Kashif and Vollgraf, Roland},\n"
               "  journal = {arXiv preprint arXiv:1708.07747},\n  year    = {2017}\n}")

ARCHS = {
    "softmax": dict(kwargs={"image_size": 28},
                    description="Softmax regression (flatten + one Linear layer): the lecture's 1-layer network "
                                "(92.5% on MNIST).",
                    paper="", citation=""),
    "mlp_sigmoid": dict(kwargs={"image_size": 28, "hidden": 625},
                        description="A multilayer perceptron with one sigmoid hidden layer of 625 units: the "
                                    "lecture's 'one hidden layer' network (98.2% on MNIST).",
                        paper="https://doi.org/10.1038/323533a0",
                        citation="@article{rumelhart1986learning,\n  title   = {Learning representations by "
                                 "back-propagating errors},\n  author  = {Rumelhart, David E. and Hinton, Geoffrey E. "
                                 "and Williams, Ronald J.},\n  journal = {Nature},\n  volume  = {323},\n  pages   = "
                                 "{533--536},\n  year    = {1986}\n}"),
    "mlp_relu": dict(kwargs={"image_size": 28, "hidden": [625, 625], "dropout": 0.5, "input_dropout": 0.2},
                     description="A multilayer perceptron with two ReLU hidden layers of 625 units and dropout: the "
                                 "lecture's 'modern' network (99.0% on MNIST).",
                     paper="https://jmlr.org/papers/v15/srivastava14a.html",
                     citation="@article{srivastava2014dropout,\n  title   = {Dropout: A Simple Way to Prevent Neural "
                              "Networks from Overfitting},\n  author  = {Srivastava, Nitish and Hinton, Geoffrey and "
                              "Krizhevsky, Alex and Sutskever, Ilya and Salakhutdinov, Ruslan},\n  journal = {JMLR},\n"
                              "  volume  = {15},\n  pages   = {1929--1958},\n  year    = {2014}\n}"),
    "lenet": dict(kwargs={"channels": [32, 64], "hidden": 128, "batchnorm": True, "dropout": 0.25},
                  description="A LeNet-style convnet (conv-pool-conv-pool-fc-fc, 3x3 convolutions, BatchNorm, ReLU, "
                              "dropout): the lecture's convolution rung (99.5% on MNIST).",
                  paper="https://doi.org/10.1109/5.726791",
                  citation="@article{lecun1998gradient,\n  title   = {Gradient-based learning applied to document "
                           "recognition},\n  author  = {LeCun, Yann and Bottou, L{\\'e}on and Bengio, Yoshua and "
                           "Haffner, Patrick},\n  journal = {Proceedings of the IEEE},\n  volume  = {86},\n  number  = "
                           "{11},\n  pages   = {2278--2324},\n  year    = {1998}\n}"),
    "googlenet": dict(kwargs={"small_input": True},
                      description="GoogLeNet (Inception v1), torchvision's builder without auxiliary heads, with a "
                                  "3x3 stride-1 stem and no first max-pool for 28-32 px inputs.",
                      paper="https://arxiv.org/abs/1409.4842",
                      citation="@inproceedings{szegedy2015going,\n  title     = {Going Deeper with Convolutions},\n"
                               "  author    = {Szegedy, Christian and Liu, Wei and Jia, Yangqing and Sermanet, Pierre "
                               "and Reed, Scott and Anguelov, Dragomir and Erhan, Dumitru and Vanhoucke, Vincent and "
                               "Rabinovich, Andrew},\n  booktitle = {CVPR},\n  year      = {2015}\n}"),
}
RESNET_CITE = ("@inproceedings{he2016deep,\n  title     = {Deep Residual Learning for Image Recognition},\n"
               "  author    = {He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing and Sun, Jian},\n"
               "  booktitle = {CVPR},\n  year      = {2016}\n}")
for depth in (18, 34, 50, 101, 152):
    ARCHS[f"resnet{depth}"] = dict(
        kwargs={"small_input": True},
        description=f"ResNet-{depth}, torchvision's builder with the CIFAR stem of He et al. (3x3 stride-1 "
                    "convolution, no max-pool) for 28-32 px inputs.",
        paper="https://arxiv.org/abs/1512.03385", citation=RESNET_CITE)


def _params(builder: str, kwargs: dict, num_classes: int) -> int:
    from zoo import archs

    net, _ = archs.build(builder, in_chans=1, num_classes=num_classes, **kwargs)
    return sum(p.numel() for p in net.parameters())


def scratch_entry(builder: str) -> dict:
    from zoo.archs import FIRST_LAYER

    spec = ARCHS[builder]
    entry = {
        "name": f"{builder}.scratch",
        "description": spec["description"] + " Random weights: train it with `zoo train`.",
        "architecture": {"library": "zoo", "builder": builder, "kwargs": spec["kwargs"]},
        "files": [],
        "license": "BSD-3-Clause",
        "license_note": LICENSE_NOTE,
        "origin": "zoo.archs (this package: zoo/archs.py)",
        "preprocessing": "fashion_mnist_28",
        "head": {"num_classes": 10, "labels": FMNIST_CLASSES, "classifier": "fc", "first_conv": FIRST_LAYER[builder]},
        "params": _params(builder, spec["kwargs"], 10),
        "recipe": f"zoo train {builder} --data fashion-mnist --out runs/{builder}",
        "tags": ["reference-architecture", "from-scratch", "fashion-mnist"],
        "card": f"{builder}.scratch.md",
    }
    if spec["paper"]:
        entry["paper"] = spec["paper"]
    if spec["citation"]:
        entry["citation"] = spec["citation"]
    return entry


# From BENCHMARKS.md (Fine-tuning, transfer); update it when the weights or the benchmark change.
TRANSFER_NOTE = ("Fine-tuned (full, no augmentation) on 24 images per class of those classes, it reaches 92.0% +- "
                 "0.8 on 1,000 Fashion-MNIST test images against 90.8% +- 0.9 for the same network trained from "
                 "scratch (5 seeds, LR chosen on a validation split for each; BENCHMARKS.md).")


def embedded_entry(info: dict) -> dict:
    from zoo.archs import FIRST_LAYER

    kwargs = ARCHS["lenet"]["kwargs"]
    source = info.get("source_classes", [0, 1, 2, 3, 4])
    labels = [FMNIST_CLASSES[i] for i in source]
    others = [name for i, name in enumerate(FMNIST_CLASSES) if i not in source]
    n_test = 1000 * len(source)
    return {
        "name": "lenet.fmnist5",
        "default": True,
        "aliases": ["zoo_lenet"],
        "description": (f"The embedded default: the LeNet-style convnet trained from scratch by `zoo train` on five "
                        f"Fashion-MNIST classes ({', '.join(labels)}). It ships inside the package, so it loads and "
                        f"fine-tunes with no network; `zoo demo` fine-tunes it on the bundled images of the other five "
                        f"classes ({', '.join(others)}). {TRANSFER_NOTE}"),
        "architecture": {"library": "zoo", "builder": "lenet", "kwargs": kwargs},
        "files": [{"role": "weights", "filename": "lenet_fmnist5.safetensors", "format": "safetensors",
                   "size": info["size"], "checksum": {"sha256": info["sha256"]},
                   "sources": [{"package": "assets/lenet_fmnist5.safetensors"}]}],
        "license": "MIT",
        "license_note": ("Weights trained by the zoo on Fashion-MNIST (Zalando Research, MIT licence; keep its "
                         "copyright notice when redistributing)."),
        "origin": "https://github.com/zalandoresearch/fashion-mnist",
        "paper": "https://arxiv.org/abs/1708.07747",
        "citation": FMNIST_CITE,
        "preprocessing": "fashion_mnist_28",
        "head": {"num_classes": 5, "labels": labels, "classifier": "fc",
                 "first_conv": FIRST_LAYER["lenet"]},
        "metrics": [
            {"dataset": "fashion-mnist-5", "metric": "top1", "value": round(100 * info["test_accuracy"], 2),
             "protocol": (f"Fashion-MNIST test split restricted to classes {','.join(map(str, source))} ({n_test:,} "
                          "images), final-epoch weights (no model selection on the test split)"),
             "source": f"measured by the zoo: {info['command']} ({info['train_seconds']:.0f} s on {info['device']})"},
        ],
        "params": _params("lenet", kwargs, 5),
        "recipe": info["command"],
        "tags": ["reference-architecture", "fashion-mnist", "embedded", "grayscale"],
        "card": "lenet.fmnist5.md",
    }


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def card(entry: dict) -> str:
    lic = {"BSD-3-Clause": "bsd-3-clause", "MIT": "mit"}[entry["license"]]
    lines = ["---", f"license: {lic}", "library_name: zoo", "pipeline_tag: image-classification", "tags:"]
    lines += [f"- {_q(t)}" for t in entry["tags"]]
    lines += ["datasets:", "- fashion-mnist", f"zoo_entry: {entry['name']}"]
    metrics = entry.get("metrics", [])
    if metrics:
        lines += ["metrics:", "- accuracy", "model-index:", f"- name: {entry['name']}", "  results:", "  - task:",
                  "      type: image-classification", "    dataset:",
                  f"      name: Fashion-MNIST ({', '.join(entry['head']['labels'])})",
                  "      type: fashion-mnist", "    metrics:"]
        for m in metrics:
            lines += [f"    - type: {m['metric']}", f"      value: {m['value']!r}", f"      name: {_q(m['protocol'])}",
                      f"      source: {_q(m['source'])}"]
    lines.append("---")
    a, h, p = entry["architecture"], entry["head"], FMNIST_PRE
    lines += ["", f"# {entry['name']}", "", entry["description"], "", "## Model details", "",
              f"- Architecture: `{a['builder']}` from zoo (`zoo.archs`) with {json.dumps(a['kwargs'])}",
              f"- Parameters: {entry['params']:,}",
              f"- Input: {' x '.join(str(v) for v in p['input_size'])} (grayscale)",
              f"- Classes: {h['num_classes']} ({', '.join(h['labels'])})",
              f"- Classifier: `{h['classifier']}`; first layer: `{h['first_conv']}`"]
    if entry.get("aliases"):
        lines.append(f"- Aliases: {', '.join(f'`{x}`' for x in entry['aliases'])}")
    lines.append(f"- Default for `{entry['name'].split('.')[0]}`: {'yes' if entry.get('default') else 'no'}")
    if entry.get("paper"):
        lines.append(f"- Paper: {entry['paper']}")
    lines.append(f"- Training recipe: `{entry['recipe']}`")
    lines += ["", "### Files", ""]
    if entry["files"]:
        for f in entry["files"]:
            lines += [f"- `{f['filename']}` (role `{f['role']}`, format {f['format']}, {f['size']:,} bytes)",
                      f"  - source: package:{f['sources'][0]['package']} (inside the installed zoo package)",
                      f"  - checksum: sha256 `{f['checksum']['sha256']}`; verified when copied into the cache"]
    else:
        lines.append("- none: the network is built by `zoo.archs` with random weights.")
    lines += ["", "## Intended use", ""]
    if entry["files"]:
        lines += ["A small pretrained backbone that needs no download: a starting point for fine-tuning on "
                  "28x28 grayscale images (Fashion-MNIST-like: clothing, shoes, bags), for teaching, and for "
                  "offline tests of the whole zoo workflow.", "", "```python", "import zoo",
                  f'model = zoo.load("{entry["name"]}")   # verified copy from the package into the cache',
                  "logits = model(model.transforms(image).unsqueeze(0))", "```", "", "```", "zoo demo",
                  ("zoo finetune lenet.fmnist5 zoo/assets/demo/fashion5 --out runs/demo --strategy full --epochs 15 "
                   "--batch-size 16 --lr 0.03 --no-augment"), "```"]
    else:
        lines += ["A reference architecture to train from scratch (on one CPU, one GPU or several under "
                  "torchrun), or to compare training set-ups on the lecture's ladder.", "", "```",
                  entry["recipe"], "```", "", "```python", "import zoo",
                  f'net = zoo.load("{entry["name"]}", pretrained=False)   # random weights', "```"]
    lines += ["", "## Preprocessing", "",
              f"- Convert to grayscale (L); resize to {p['resize']} px and centre-crop 28x28; scale to 0-1.",
              f"- Subtract the mean {p['mean']} and divide by the standard deviation {p['std']} (Fashion-MNIST "
              "training split).",
              "- `zoo.load(...)` attaches this as `model.transforms`; `zoo train` on other data recomputes the "
              "statistics of that data and stores them in the run."]
    if metrics:
        lines += ["", "## Evaluation", "", "| metric | value | protocol | source |", "| --- | --- | --- | --- |"]
        lines += [f"| {m['metric']} | {m['value']} | {m['protocol']} | {m['source']} |" for m in metrics]
        lines += ["", "Measured by the zoo with the command above; re-running it on another machine gives figures "
                  "within noise (the seed fixes the CPU run)."]
    lines += ["", "## Limitations", "", f"- Licence: `{entry['license']}`. {entry['license_note']}"]
    if entry["files"]:
        lines += ["- Trained on five Fashion-MNIST classes of 28x28 grayscale product photos on a plain background: its "
                  "features suit similar images; colour photos are converted to grayscale and lose information.",
                  "- Small by design (fast on a CPU), far from the state of the art on Fashion-MNIST."]
    else:
        lines.append("- No pretrained weights: accuracy depends on the training run (see the ladder in "
                     "BENCHMARKS.md).")
    if entry.get("citation"):
        lines += ["", "## Citation", "", "```bibtex", entry["citation"], "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    from zoo.registry.schema import parse_entry
    from zoo.registry.serialiser import write_entries

    entries = [scratch_entry(b) for b in ARCHS]
    if EMBEDDED.is_file():
        entries.insert(0, embedded_entry(json.loads(EMBEDDED.read_text())))
    presets = {"fashion_mnist_28": FMNIST_PRE}
    # Parsed by the schema and written by its serialiser: the file holds exactly what the registry reads.
    parsed = [parse_entry(e, path="registry/entries/zoo.json", index=i, presets=presets)
              for i, e in enumerate(entries)]
    shared = parse_entry({**entries[0], "preprocessing": FMNIST_PRE}, path="registry/entries/zoo.json", index=0)
    write_entries(ENTRIES, parsed, collection="builtin", presets={"fashion_mnist_28": shared.preprocessing},
                  comment="The zoo's own entries. Generated by tools/gen_zoo_entries.py; do not edit by hand.")
    for entry in entries:
        (CARDS / entry["card"]).write_text(card(entry), encoding="utf-8")
    print(f"wrote {len(entries)} entries to {ENTRIES.relative_to(ROOT)} and their cards")


if __name__ == "__main__":
    main()

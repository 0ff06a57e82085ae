"""The Caffe Model Zoo mirror's entries, as literal data: the single source of ``registry/entries/caffe.json``.

Every value comes from the project's Caffe research notes (BVLC/caffe model readmes, the VGG/NIN gists,
KaimingHe/deep-residual-networks, forresti/SqueezeNet, and apache/mxnet's
``tools/caffe_converter/convert_caffe_modelzoo.py`` for the mirror URLs and third-party sha1s).
``gen_registry.py`` writes them through the registry's serialiser; ``tests/registry/test_generated.py``
fails when the JSON file and this data drift apart. Standard library only.
"""

from __future__ import annotations

from citations import (CITE_ALEXNET, CITE_CAFFE, CITE_GOOGLENET, CITE_NIN, CITE_RESNET, CITE_SQUEEZENET,
                       CITE_VGG)

IMAGENET_PROTOCOL = "ImageNet-1k (ILSVRC-2012) validation set, 50,000 images"

MXNET_S3 = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/caffe/models/"
MXNET_OLD = "http://data.mxnet.io/models/imagenet/test/caffe/"
MXNET_SRC = "apache/mxnet tools/caffe_converter/convert_caffe_modelzoo.py"
BVLC_SRC = "BVLC/caffe models/{}/readme.md @ 9b89154"

# Per-channel means of python/caffe/imagenet/ilsvrc_2012_mean.npy (B, G, R), recomputed in the research notes.
ILSVRC_MEAN_BGR = [104.0069879317889, 116.66876761696767, 122.6789143406786]

BVLC_LICENSE_NOTE = (
    "BVLC/BAIR release the reference models for unrestricted use (models/*/readme.md front matter "
    "'license: unrestricted'; docs/model_zoo.md, 'BAIR model license'). They were trained on ImageNet, whose "
    "terms of access restrict the images to non-commercial research; whether that binds the weights is not "
    "settled, so check your use against the ImageNet terms."
)


def caffe_weights(filename: str, urls: list[str], checksum: dict) -> dict:
    return {"role": "weights", "filename": filename, "format": "caffemodel", "checksum": checksum,
            "sources": [{"url": u} for u in urls]}


def publisher_sha1(value: str, note: str = "") -> dict:
    out = {"sha1": value}
    if note:
        out["note"] = note
    return out


def third_party_sha1(value: str, note: str) -> dict:
    return {"sha1": value, "trust": "third-party", "note": note}


IMAGENET_MEAN_FILE = {
    "role": "mean", "filename": "imagenet_mean.binaryproto", "format": "binaryproto",
    "checksum": third_party_sha1(
        "63e4652e656abc1e87b7a8339a7e02fca63a2c0c",
        "sha1 from apache/mxnet's Caffe converter (convert_caffe_modelzoo.py), which mirrors the file. The "
        "original is not a plain file: BVLC ship imagenet_mean.binaryproto inside "
        "http://dl.caffe.berkeleyvision.org/caffe_ilsvrc12.tar.gz (data/ilsvrc12/get_ilsvrc_aux.sh), so the "
        "zoo fetches the mxnet mirror's plain copy and checks it against this value."),
    "sources": [{"url": MXNET_S3 + "bvlc_alexnet/imagenet_mean.binaryproto"},
                {"url": "https://raw.githubusercontent.com/dmlc/web-data/master/mxnet/caffe/imagenet_mean.binaryproto"}],
}
RESNET_MEAN_FILE = {
    "role": "mean", "filename": "ResNet_mean.binaryproto", "format": "binaryproto",
    "checksum": third_party_sha1(
        "0b056fd4444f0ae1537af646ba736edf0d4cefaf",
        "sha1 from apache/mxnet's Caffe converter mirror; the original sits in the authors' OneDrive folder "
        "(KaimingHe/deep-residual-networks README), which publishes no checksum."),
    "sources": [{"url": MXNET_S3 + "resnet/ResNet_mean.binaryproto"},
                {"url": MXNET_OLD + "ResNet_mean.binaryproto"}],
}


def deploy(filename: str, path: str, sha1: str) -> dict:
    return {"role": "deploy", "filename": filename, "format": "prototxt",
            "checksum": third_party_sha1(sha1, "sha1 of apache/mxnet's mirrored copy of the deploy prototxt "
                                               "(convert_caffe_modelzoo.py)."),
            "sources": [{"url": MXNET_S3 + path}]}


def caffe_pre(size: int, *, resize: int = 256, mean: list[float] | None = None, mean_file: str | None = None) -> dict:
    out = {"input_size": [3, size, size], "resize": resize, "interpolation": "bilinear", "channel_order": "BGR",
           "scale": 255.0, "std": [1.0, 1.0, 1.0]}
    if mean is not None:
        out["mean"] = mean
    if mean_file:
        out["mean_file"] = mean_file
    return out


def caffe_head(classifier: str | None) -> dict:
    out = {"num_classes": 1000, "labels": "imagenet-1k"}
    if classifier:
        out["classifier"] = classifier
    return out


def caffe_arch(size: int) -> dict:
    return {"library": "caffe", "builder": "caffemodel", "kwargs": {"input": [3, size, size]}}


def acc(metric: str, value: float, protocol: str, source: str) -> dict:
    return {"dataset": "imagenet-1k", "metric": metric, "value": value, "protocol": protocol, "source": source}


CENTER = "single centre crop, ILSVRC-2012 val"


def _bvlc_entries() -> list[dict]:
    """BVLC's AlexNet, CaffeNet and GoogLeNet."""
    entries = []
    alexnet_url = "http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel"
    entries.append({
        "name": "bvlc_alexnet.caffe_in1k", "aliases": ["caffe_alexnet"], "default": True,
        "description": ("BAIR/BVLC AlexNet Model: Caffe's replication of Krizhevsky et al. (2012), trained on "
                        "ILSVRC-2012 (snapshot at iteration 360,000). Differs from the paper in that it uses no "
                        "relighting augmentation and initialises the biases to 0.1 instead of 1. Mean subtraction "
                        "uses the per-pixel ILSVRC-2012 mean image (role 'mean'); the mean pixel given beside it "
                        "is that image's per-channel average, for callers without the mean file."),
        "architecture": caffe_arch(227),
        "files": [caffe_weights("bvlc_alexnet.caffemodel",
                                [alexnet_url, MXNET_S3 + "bvlc_alexnet/bvlc_alexnet.caffemodel"],
                                publisher_sha1("9116a64c0fbe4459d18f4bb6b56d647b63920377")),
                  IMAGENET_MEAN_FILE,
                  deploy("deploy.prototxt", "bvlc_alexnet/deploy.prototxt", "cb77655eb4db32c9c47699c6050926f9e0fc476a")],
        "license": "bvlc-unrestricted", "license_note": BVLC_LICENSE_NOTE,
        "origin": "https://github.com/BVLC/caffe/tree/master/models/bvlc_alexnet",
        "paper": "https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks",
        "citation": CITE_ALEXNET + "\n" + CITE_CAFFE,
        "preprocessing": caffe_pre(227, mean=ILSVRC_MEAN_BGR, mean_file="mean"),
        "head": caffe_head("fc8"),
        "metrics": [acc("top1", 57.1, CENTER + "; best val 57.258% at iteration 358,000", BVLC_SRC.format("bvlc_alexnet")),
                    acc("top5", 80.2, CENTER, BVLC_SRC.format("bvlc_alexnet"))],
        "recipe": "https://github.com/BVLC/caffe/blob/master/models/bvlc_alexnet/solver.prototxt",
        "tags": ["caffe", "image-classification", "imagenet"],
    })
    entries.append({
        "name": "bvlc_reference_caffenet.caffe_in1k", "aliases": ["caffe_caffenet", "caffenet"], "default": True,
        "description": ("BAIR/BVLC CaffeNet Model: AlexNet with pooling before local response normalisation "
                        "(conv -> relu -> pool -> norm), trained on ILSVRC-2012 (snapshot at iteration 310,000). "
                        "Mean subtraction uses the per-pixel ILSVRC-2012 mean image (role 'mean')."),
        "architecture": caffe_arch(227),
        "files": [caffe_weights("bvlc_reference_caffenet.caffemodel",
                                ["http://dl.caffe.berkeleyvision.org/bvlc_reference_caffenet.caffemodel"],
                                publisher_sha1("4c8d77deb20ea792f84eb5e6d0a11ca0a8660a46")),
                  IMAGENET_MEAN_FILE],
        "license": "bvlc-unrestricted",
        "license_note": BVLC_LICENSE_NOTE + (" Older revisions of this model's readme said 'license: "
                                             "non-commercial'; the current BVLC text says 'unrestricted'."),
        "origin": "https://github.com/BVLC/caffe/tree/master/models/bvlc_reference_caffenet",
        "paper": "https://arxiv.org/abs/1408.5093",
        "citation": CITE_CAFFE + "\n" + CITE_ALEXNET,
        "preprocessing": caffe_pre(227, mean=ILSVRC_MEAN_BGR, mean_file="mean"),
        "head": caffe_head("fc8"),
        "metrics": [acc("top1", 57.4, CENTER + "; best val 57.412% at iteration 313,000",
                        BVLC_SRC.format("bvlc_reference_caffenet")),
                    acc("top5", 80.4, CENTER, BVLC_SRC.format("bvlc_reference_caffenet"))],
        "recipe": "https://github.com/BVLC/caffe/blob/master/models/bvlc_reference_caffenet/solver.prototxt",
        "tags": ["caffe", "image-classification", "imagenet"],
    })
    entries.append({
        "name": "bvlc_googlenet.caffe_in1k", "aliases": ["caffe_googlenet"], "default": True,
        "description": ("BAIR/BVLC GoogleNet Model: Caffe's replication of GoogLeNet (Szegedy et al. 2014), "
                        "trained on ILSVRC-2012 with the quick solver for 2.4M iterations (60 epochs). The "
                        "caffemodel also holds the auxiliary heads loss1/* and loss2/*, which inference skips."),
        "architecture": caffe_arch(224),
        "files": [caffe_weights("bvlc_googlenet.caffemodel",
                                ["http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel",
                                 MXNET_S3 + "bvlc_googlenet/bvlc_googlenet.caffemodel"],
                                publisher_sha1("405fc5acd08a3bb12de8ee5e23a96bec22f08204")),
                  deploy("deploy.prototxt", "bvlc_googlenet/deploy.prototxt", "7060345c8012294baa60eeb5901d2d3fd89d75fc")],
        "license": "bvlc-unrestricted", "license_note": BVLC_LICENSE_NOTE,
        "origin": "https://github.com/BVLC/caffe/tree/master/models/bvlc_googlenet",
        "paper": "https://arxiv.org/abs/1409.4842",
        "citation": CITE_GOOGLENET + "\n" + CITE_CAFFE,
        "preprocessing": caffe_pre(224, mean=[104.0, 117.0, 123.0]),
        "head": caffe_head("loss3/classifier"),
        "metrics": [acc("top1", 68.7, CENTER, BVLC_SRC.format("bvlc_googlenet")),
                    acc("top5", 88.9, CENTER, BVLC_SRC.format("bvlc_googlenet"))],
        "recipe": "https://github.com/BVLC/caffe/blob/master/models/bvlc_googlenet/quick_solver.prototxt",
        "tags": ["caffe", "image-classification", "imagenet"],
    })
    return entries


def _vgg_entries() -> list[dict]:
    """VGG-16 and VGG-19 (Simonyan and Zisserman's gists)."""
    entries = []
    vgg_license_note = (
        "The licence statements conflict: the VGG project page (http://www.robots.ox.ac.uk/~vgg/research/very_deep/) "
        "says the models are released under the Creative Commons Attribution License (recorded here as CC-BY-4.0), "
        "the 16-layer gist points to that page, and an older revision of the 19-layer gist says "
        "http://creativecommons.org/licenses/by-nc/4.0/ (non-commercial use only). Treat commercial use as unclear "
        "and check with the authors.")
    vgg = {16: ("211839e770f7b538e2d8", "9363e1f6d65f7dba68c4f27a1e62105cdf6c4e24",
                "2734e5500f1445bd7c9fee540c99f522485247bd", 8.1, 7.5, 73.4, 91.4, 13),
           19: ("3785162f95cd2d5fee77", "239785e7862442717d831f682bb824055e51e9ba",
                "132d2f60b3d3b1c2bb9d3fdb0c8931a44f89e2ae", 8.0, 7.5, 73.1, 91.3, 16)}
    for depth, (gist, sha1, deploy_sha1, err_single, err_multi, top1, top5, convs) in vgg.items():
        stem = f"VGG_ILSVRC_{depth}_layers"
        entries.append({
            "name": f"vgg{depth}.caffe_in1k", "aliases": [f"caffe_vgg{depth}", stem.lower()], "default": False,
            "description": (f"The {depth}-layer model from Simonyan & Zisserman, 'Very Deep Convolutional Networks "
                            f"for Large-Scale Image Recognition' ({convs} convolutions, 3 fully connected layers), "
                            "as released by the VGG group in Caffe format. Trained with a custom Caffe-based "
                            "framework; the gist publishes no sha1, so the checksum is the one apache/mxnet pinned "
                            "for its mirror. Mean subtraction uses a mean pixel (not a mean image). The bare name "
                            f"'vgg{depth}' resolves to torchvision's weights; use 'caffe_vgg{depth}' for these."),
            "architecture": caffe_arch(224),
            "files": [caffe_weights(f"{stem}.caffemodel",
                                    [f"http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/{stem}.caffemodel",
                                     MXNET_S3 + f"vgg/{stem}.caffemodel", MXNET_OLD + f"{stem}.caffemodel"],
                                    third_party_sha1(sha1, "The gist's front matter has no sha1; this value is "
                                                     "apache/mxnet's for its mirrored copy. It is verified on "
                                                     "download like any other, but it was not published by the "
                                                     "authors.")),
                      deploy(f"{stem}_deploy.prototxt", f"vgg/{stem}_deploy.prototxt", deploy_sha1)],
            "license": "CC-BY-4.0", "license_note": vgg_license_note,
            "origin": f"https://gist.github.com/ksimonyan/{gist}",
            "paper": "https://arxiv.org/abs/1409.1556",
            "citation": CITE_VGG,
            "preprocessing": caffe_pre(224, mean=[103.939, 116.779, 123.68]),
            "head": caffe_head("fc8"),
            "metrics": [
                acc("top5_err", err_single, "dense evaluation, single scale (Q=384), ILSVRC-2012 val; top-5 error",
                    f"gist ksimonyan/{gist} readme"),
                acc("top5_err_multiscale", err_multi, "dense evaluation, multiple scales, ILSVRC-2012 val; top-5 error",
                    f"gist ksimonyan/{gist} readme"),
                acc("top1", top1, "MXNet converter test reference (500 val images, tolerance 3 points)", MXNET_SRC),
                acc("top5", top5, "MXNet converter test reference (500 val images, tolerance 3 points)", MXNET_SRC),
            ],
            "tags": ["caffe", "image-classification", "imagenet"],
        })
    return entries


def _resnet_entries() -> list[dict]:
    """ResNet-50/101/152 (KaimingHe/deep-residual-networks)."""
    entries = []
    resnet_license_note = (
        "KaimingHe/deep-residual-networks carries an MIT LICENSE (copyright 2016 Shaoqing Ren) and calls these "
        "'the original models'; no separate licence for the weights is stated. They were trained on ImageNet: "
        "check your use against the ImageNet terms.")
    resnet = {50: ("17895", 24.7, 7.8, 22.9, 6.7, "b7c79ccc21ad0479cddc0dd78b1d20c4d722908d",
                   "5d6fd5aeadd8d4684843c5028b4e5672b9e51638"),
              101: ("17896", 23.6, 7.1, 21.8, 6.1, "1dbf5f493926bb9b6b3363b12d5133c0f8b78904",
                    "c165d6b6ccef7cc39ee16a66f00f927f93de198b"),
              152: ("17897", 23.0, 6.7, 21.4, 5.7, "251edb93604ac8268c7fd2227a0f15144310e1aa",
                    "ae15aade2304af8a774c5bfb1d32457f119214ef")}
    for depth, (resid, e1, e5, e1_10, e5_10, sha1, deploy_sha1) in resnet.items():
        src = "KaimingHe/deep-residual-networks README @ a7026cb"
        entries.append({
            "name": f"resnet{depth}.caffe_msra_in1k", "aliases": [f"caffe_resnet{depth}"], "default": False,
            "description": (f"ResNet-{depth} as released by its authors (MSRA) in Caffe format: BatchNorm with "
                            "global statistics plus Scale layers, stride 2 on the 1x1 convolutions of each "
                            "downsampling block (unlike torchvision's 'v1.5' ResNet). Mean subtraction uses the "
                            "authors' per-pixel mean image ResNet_mean.binaryproto (role 'mean'); no mean pixel is "
                            f"published, so none is given here. The bare name 'resnet{depth}' resolves to "
                            f"torchvision's weights; use 'caffe_resnet{depth}' for these."),
            "architecture": caffe_arch(224),
            "files": [caffe_weights(f"ResNet-{depth}-model.caffemodel",
                                    [MXNET_S3 + f"resnet/ResNet-{depth}-model.caffemodel",
                                     "https://onedrive.live.com/download?cid=4006CBB8476FF777&resid=4006CBB8476FF777"
                                     f"%21{resid}&authkey=%21AAFW2%2DFVoxeVRck",
                                     MXNET_OLD + f"ResNet-{depth}-model.caffemodel"],
                                    third_party_sha1(sha1, "The authors publish the files in a OneDrive folder with "
                                                     "no checksum; this sha1 is apache/mxnet's for its mirror, "
                                                     "which is therefore tried first. The OneDrive direct link "
                                                     "is itself a third-party reconstruction.")),
                      RESNET_MEAN_FILE,
                      deploy(f"ResNet-{depth}-deploy.prototxt", f"resnet/ResNet-{depth}-deploy.prototxt", deploy_sha1)],
            "license": "MIT", "license_note": resnet_license_note,
            "origin": "https://github.com/KaimingHe/deep-residual-networks",
            "paper": "https://arxiv.org/abs/1512.03385",
            "citation": CITE_RESNET,
            "preprocessing": caffe_pre(224, mean_file="mean"),
            "head": caffe_head("fc1000"),
            "metrics": [
                acc("top1", round(100 - e1, 1), f"single 224 centre crop of the 256-resized image, ILSVRC-2012 val "
                    f"(reported as {e1}% top-1 error)", src),
                acc("top5", round(100 - e5, 1), f"single 224 centre crop of the 256-resized image, ILSVRC-2012 val "
                    f"(reported as {e5}% top-5 error)", src),
                acc("top1_10crop", round(100 - e1_10, 1), f"10-crop testing, ILSVRC-2012 val (reported as "
                    f"{e1_10}% top-1 error)", src),
                acc("top5_10crop", round(100 - e5_10, 1), f"10-crop testing, ILSVRC-2012 val (reported as "
                    f"{e5_10}% top-5 error)", src),
            ],
            "tags": ["caffe", "image-classification", "imagenet"],
        })
    return entries


def _nin_entries() -> list[dict]:
    """Network in Network (the NIN gist)."""
    entries = []
    entries.append({
        "name": "nin_imagenet.caffe_in1k", "aliases": ["caffe_nin", "nin"], "default": True,
        "description": ("Network in Network ImageNet Model (Lin, Chen & Yan): convolutions with 1x1 'cccp' "
                        "layers and a global 6x6 average pool, no fully connected layer. The authors trained "
                        "with a local mean file that was never published; the zoo uses the ILSVRC-2012 mean image "
                        "(role 'mean') as users commonly do, which is an approximation. The 1000 class scores come from a 1x1 "
                        "convolution followed by ReLU and global average pooling, not from a fully connected "
                        "layer, so head.classifier is left unset. Third-party ports of the model name that "
                        "convolution 'cccp8-1024'; the original deploy file was not read."),
        "architecture": caffe_arch(224),
        "files": [caffe_weights("nin_imagenet.caffemodel",
                                ["https://www.dropbox.com/s/0cidxafrb2wuwxw/nin_imagenet.caffemodel?dl=1"],
                                {"sha1": "8e89c8fcd46e02780e16c867a5308e7bb7af0803", "trust": "suspect",
                                 "note": ("The gist's sha1 is also given, in a copy of the NIN CIFAR-10 gist readme, "
                                          "as the sha1 of cifar10_nin.caffemodel, so at least one of the two is a "
                                          "copy-paste error. A mismatch is reported with the file's real sha1 but "
                                          "does not reject the download; compare it with a trusted copy.")}),
                  IMAGENET_MEAN_FILE],
        "license": "non-commercial",
        "license_note": ("An indexed copy of the gist readme says 'license: non-commercial'; a later gist revision "
                         "says 'license: BSD'. The zoo records the stricter reading; ask the authors before "
                         "commercial use."),
        "origin": "https://gist.github.com/mavenlin/d802a5849de39225bcc6",
        "paper": "https://arxiv.org/abs/1312.4400",
        "citation": CITE_NIN,
        "preprocessing": caffe_pre(224, mean=ILSVRC_MEAN_BGR, mean_file="mean"),
        "head": caffe_head(None),
        "metrics": [acc("top1", 59.36, "ILSVRC-2012 val (the readme adds that 10-crop testing 'should obtain a "
                        "bit higher')", "gist mavenlin/d802a5849de39225bcc6 readme")],
        "tags": ["caffe", "image-classification", "imagenet"],
    })
    return entries


def _squeezenet_entries() -> list[dict]:
    """SqueezeNet 1.0 and 1.1 (forresti/SqueezeNet)."""
    entries = []
    squeeze = {"1_0": ("v1.0", "a381d848b43d7048c3b362238ece2386c21d6ff0",
                       "the original design (conv1 96x7x7, pools after layers 1, 4 and 8)"),
               "1_1": ("v1.1", "9d2fc33abf653a6e8b2ee6cc63ede0e72ec67f44",
                       "2.4x less computation than v1.0 (0.72 vs 1.72 GFLOPS per image) at the same accuracy "
                       "(conv1 64x3x3, pools after layers 1, 3 and 5)")}
    for ver, (v, blob, what) in squeeze.items():
        path = f"SqueezeNet_{v}/squeezenet_{v}.caffemodel"
        entries.append({
            "name": f"squeezenet{ver}.caffe_in1k", "aliases": [f"caffe_squeezenet{ver}"], "default": False,
            "description": (f"SqueezeNet {v[1:]}: {what}. The network ends in a 1x1 convolution with 1000 outputs "
                            "(conv10 in the authors' deploy.prototxt), a ReLU and a global average pool (pool10); "
                            "it has no fully connected classifier, so head.classifier is left unset (replacing "
                            "the head means replacing conv10). The caffemodel is committed "
                            "in the authors' git repository, which publishes no sha1; the checksum is the git "
                            f"blob id. The bare name 'squeezenet{ver}' resolves to torchvision's weights."),
            "architecture": caffe_arch(227),
            "files": [caffe_weights(f"squeezenet_{v}.caffemodel",
                                    [f"https://github.com/forresti/SqueezeNet/raw/master/{path}",
                                     f"https://github.com/DeepScale/SqueezeNet/raw/master/{path}"],
                                    {"git-blob-sha1": blob,
                                     "note": ("git blob id: sha1 over 'blob <byte length>\\0' followed by the file "
                                              "bytes (not the plain file sha1), read from the repository at "
                                              "51147dc.")})],
            "license": "BSD-2-Clause",
            "license_note": "forresti/SqueezeNet LICENSE (BSD 2-clause text). Trained on ImageNet: check your use "
                            "against the ImageNet terms.",
            "origin": "https://github.com/forresti/SqueezeNet",
            "paper": "https://arxiv.org/abs/1602.07360",
            "citation": CITE_SQUEEZENET,
            "preprocessing": caffe_pre(227, mean=[104.0, 117.0, 123.0]),
            "head": caffe_head(None),
            "metrics": [acc("top5", 80.3, "ILSVRC-2012 val; the README states '>= 80.3% top-5'",
                            "forresti/SqueezeNet README @ 51147dc")],
            "tags": ["caffe", "image-classification", "imagenet"],
        })
    return entries


def caffe_entries() -> list[dict]:
    """Every Caffe entry, in the order of caffe.json, each with its card."""
    entries = _bvlc_entries() + _vgg_entries() + _resnet_entries() + _nin_entries() + _squeezenet_entries()
    for e in entries:
        e["card"] = f"{e['name']}.md"
    return entries

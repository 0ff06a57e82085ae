"""Write the built-in registry files ``registry/entries/{caffe,torchvision,timm}.json``.

Every value comes from a named source, never from a guess:

* caffe.json: the facts collected in the project's Caffe research notes (BVLC/caffe model readmes, the
  VGG/NIN gists, KaimingHe/deep-residual-networks, forresti/SqueezeNet, and apache/mxnet's
  ``tools/caffe_converter/convert_caffe_modelzoo.py`` for the mirror URLs and third-party sha1s),
  transcribed below as literal data.
* torchvision.json: read from the installed torchvision's weight enums (url, transforms, meta).
* timm.json: read from the installed timm's ``pretrained_cfg``; accuracy from timm's
  ``results/results-imagenet.csv`` (literal below, with the commit it was read at).

This is a maintainer's tool: it imports torch, torchvision and timm, which the registry itself never does.
Run it with ``.venv/bin/python tools/gen_registry.py`` and commit the JSON it writes; the JSON is the
artefact the package ships, this script only documents where each number came from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = ROOT / "registry" / "entries"

IMAGENET_PROTOCOL = "ImageNet-1k (ILSVRC-2012) validation set, 50,000 images"

# ---------------------------------------------------------------------------------------------------
# Citations (BibTeX) shared by several entries.

CITE_ALEXNET = """@inproceedings{krizhevsky2012imagenet,
  title     = {ImageNet Classification with Deep Convolutional Neural Networks},
  author    = {Krizhevsky, Alex and Sutskever, Ilya and Hinton, Geoffrey E.},
  booktitle = {Advances in Neural Information Processing Systems 25},
  year      = {2012}
}"""
CITE_CAFFE = """@article{jia2014caffe,
  title   = {Caffe: Convolutional Architecture for Fast Feature Embedding},
  author  = {Jia, Yangqing and Shelhamer, Evan and Donahue, Jeff and Karayev, Sergey and Long, Jonathan and Girshick, Ross and Guadarrama, Sergio and Darrell, Trevor},
  journal = {arXiv preprint arXiv:1408.5093},
  year    = {2014}
}"""
CITE_GOOGLENET = """@inproceedings{szegedy2015going,
  title     = {Going Deeper with Convolutions},
  author    = {Szegedy, Christian and Liu, Wei and Jia, Yangqing and Sermanet, Pierre and Reed, Scott and Anguelov, Dragomir and Erhan, Dumitru and Vanhoucke, Vincent and Rabinovich, Andrew},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2015}
}"""
CITE_VGG = """@inproceedings{simonyan2015very,
  title     = {Very Deep Convolutional Networks for Large-Scale Image Recognition},
  author    = {Simonyan, Karen and Zisserman, Andrew},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2015}
}"""
CITE_RESNET = """@inproceedings{he2016deep,
  title     = {Deep Residual Learning for Image Recognition},
  author    = {He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing and Sun, Jian},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2016}
}"""
CITE_NIN = """@article{lin2013network,
  title   = {Network In Network},
  author  = {Lin, Min and Chen, Qiang and Yan, Shuicheng},
  journal = {arXiv preprint arXiv:1312.4400},
  year    = {2013}
}"""
CITE_SQUEEZENET = """@article{iandola2016squeezenet,
  title   = {SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size},
  author  = {Iandola, Forrest N. and Han, Song and Moskewicz, Matthew W. and Ashraf, Khalid and Dally, William J. and Keutzer, Kurt},
  journal = {arXiv preprint arXiv:1602.07360},
  year    = {2016}
}"""
CITE_INCEPTION_V3 = """@inproceedings{szegedy2016rethinking,
  title     = {Rethinking the Inception Architecture for Computer Vision},
  author    = {Szegedy, Christian and Vanhoucke, Vincent and Ioffe, Sergey and Shlens, Jon and Wojna, Zbigniew},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2016}
}"""
CITE_CONVNEXT = """@inproceedings{liu2022convnet,
  title     = {A ConvNet for the 2020s},
  author    = {Liu, Zhuang and Mao, Hanzi and Wu, Chao-Yuan and Feichtenhofer, Christoph and Darrell, Trevor and Xie, Saining},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}"""
CITE_EFFICIENTNET = """@inproceedings{tan2019efficientnet,
  title     = {EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks},
  author    = {Tan, Mingxing and Le, Quoc V.},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2019}
}"""
CITE_VIT = """@inproceedings{dosovitskiy2021image,
  title     = {An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale},
  author    = {Dosovitskiy, Alexey and Beyer, Lucas and Kolesnikov, Alexander and Weissenborn, Dirk and Zhai, Xiaohua and Unterthiner, Thomas and Dehghani, Mostafa and Minderer, Matthias and Heigold, Georg and Gelly, Sylvain and Uszkoreit, Jakob and Houlsby, Neil},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2021}
}"""
CITE_MOBILENETV3 = """@inproceedings{howard2019searching,
  title     = {Searching for MobileNetV3},
  author    = {Howard, Andrew and Sandler, Mark and Chu, Grace and Chen, Liang-Chieh and Chen, Bo and Tan, Mingxing and Wang, Weijun and Zhu, Yukun and Pang, Ruoming and Vasudevan, Vijay and Le, Quoc V. and Adam, Hartwig},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2019}
}"""
CITE_RSB = """@article{wightman2021resnet,
  title   = {ResNet strikes back: An improved training procedure in timm},
  author  = {Wightman, Ross and Touvron, Hugo and J{\\'e}gou, Herv{\\'e}},
  journal = {arXiv preprint arXiv:2110.00476},
  year    = {2021}
}"""
CITE_AUGREG = """@article{steiner2021augreg,
  title   = {How to train your ViT? Data, Augmentation, and Regularization in Vision Transformers},
  author  = {Steiner, Andreas and Kolesnikov, Alexander and Zhai, Xiaohua and Wightman, Ross and Uszkoreit, Jakob and Beyer, Lucas},
  journal = {arXiv preprint arXiv:2106.10270},
  year    = {2021}
}"""

# ---------------------------------------------------------------------------------------------------
# Caffe Model Zoo mirror.

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


def caffe_entries() -> list[dict]:
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
    for e in entries:
        e["card"] = f"{e['name']}.md"
    return entries


# ---------------------------------------------------------------------------------------------------
# torchvision: read from the installed library.

TORCHVISION = [
    # (builder, weights enum, tag per member, paper, citation, kwargs)
    ("resnet18", "ResNet18_Weights", CITE_RESNET, "https://arxiv.org/abs/1512.03385", {}),
    ("resnet34", "ResNet34_Weights", CITE_RESNET, "https://arxiv.org/abs/1512.03385", {}),
    ("resnet50", "ResNet50_Weights", CITE_RESNET, "https://arxiv.org/abs/1512.03385", {}),
    ("resnet101", "ResNet101_Weights", CITE_RESNET, "https://arxiv.org/abs/1512.03385", {}),
    ("resnet152", "ResNet152_Weights", CITE_RESNET, "https://arxiv.org/abs/1512.03385", {}),
    # torchvision's builders turn transform_input on for these ported Google weights (they expect inputs
    # re-normalised from ImageNet mean/std to [-1, 1]); the aux heads are dropped at load time.
    ("googlenet", "GoogLeNet_Weights", CITE_GOOGLENET, "https://arxiv.org/abs/1409.4842",
     {"aux_logits": False, "init_weights": False, "transform_input": True}),
    ("inception_v3", "Inception_V3_Weights", CITE_INCEPTION_V3, "https://arxiv.org/abs/1512.00567",
     {"aux_logits": False, "init_weights": False, "transform_input": True}),
    ("convnext_tiny", "ConvNeXt_Tiny_Weights", CITE_CONVNEXT, "https://arxiv.org/abs/2201.03545", {}),
    ("efficientnet_b0", "EfficientNet_B0_Weights", CITE_EFFICIENTNET, "https://arxiv.org/abs/1905.11946", {}),
    ("vit_b_16", "ViT_B_16_Weights", CITE_VIT, "https://arxiv.org/abs/2010.11929", {}),
    ("mobilenet_v3_large", "MobileNet_V3_Large_Weights", CITE_MOBILENETV3, "https://arxiv.org/abs/1905.02244", {}),
    # So that the bare names vgg16/vgg19/squeezenet1_0/1_1 resolve to PyTorch-native weights, not Caffe files.
    ("vgg16", "VGG16_Weights", CITE_VGG, "https://arxiv.org/abs/1409.1556", {}),
    ("vgg19", "VGG19_Weights", CITE_VGG, "https://arxiv.org/abs/1409.1556", {}),
    ("squeezenet1_0", "SqueezeNet1_0_Weights", CITE_SQUEEZENET, "https://arxiv.org/abs/1602.07360", {}),
    ("squeezenet1_1", "SqueezeNet1_1_Weights", CITE_SQUEEZENET, "https://arxiv.org/abs/1602.07360", {}),
]
# Members that are not plain ImageNet-1k classifiers under torchvision's BSD-3 terms, left out on purpose.
TV_SKIP = {
    "IMAGENET1K_FEATURES": "VGG-16 feature weights with no classifier (metrics are NaN)",
    "IMAGENET1K_SWAG_E2E_V1": "SWAG weights, licensed CC-BY-NC-4.0 by Meta",
    "IMAGENET1K_SWAG_LINEAR_V1": "SWAG weights, licensed CC-BY-NC-4.0 by Meta",
}
TV_TAGS = {"IMAGENET1K_V1": "tv_in1k", "IMAGENET1K_V2": "tv2_in1k"}
TV_LICENSE_NOTE = ("BSD-3-Clause is torchvision's code licence; torchvision states no separate licence for these "
                   "weights. They were trained on ImageNet-1k, whose terms of access restrict the images to "
                   "non-commercial research: check your use against them.")
PREFIX_NOTE = ("torchvision publishes only a hash prefix in the file name; the full sha256 is pinned in the cache "
               "on first verified download")


def _module_paths(builder: str, kwargs: dict) -> tuple[str, str]:
    import torch
    import torchvision.models as tvm

    model = getattr(tvm, builder)(**{k: v for k, v in kwargs.items() if k != "transform_input"})
    finals = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not finals:  # SqueezeNet: the classifier is a 1x1 convolution
        finals = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    first = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d))
    return finals[-1], first


def torchvision_entries() -> list[dict]:
    import re

    import torchvision
    import torchvision.models as tvm

    entries = []
    for builder, enum_name, citation, paper, kwargs in TORCHVISION:
        enum = getattr(tvm, enum_name)
        classifier, first_conv = _module_paths(builder, kwargs)
        for member in enum:
            if member.name in TV_SKIP:
                continue
            tag = TV_TAGS[member.name]
            meta = member.meta
            t = member.transforms()
            crop, resize = t.crop_size[0], t.resize_size[0]
            filename = member.url.rsplit("/", 1)[1]
            prefix = re.search(r"-([0-9a-f]{8,})\.pth$", filename).group(1)
            docs = " ".join(meta.get("_docs", "").split())
            docs = re.sub(r"`([^<`]+?)\s*<([^>]+)>`_+", r"\1 (\2)", docs)
            m = meta["_metrics"]["ImageNet-1K"]
            src = f"torchvision {torchvision.__version__.split('+')[0]} {enum_name}.{member.name}.meta"
            entries.append({
                "name": f"{builder}.{tag}", "default": member is enum.DEFAULT,
                "aliases": [f"{builder}.tv_{member.name.lower()}"],
                "description": f"torchvision's {enum_name}.{member.name}. {docs}",
                "architecture": {"library": "torchvision", "builder": builder, "kwargs": kwargs},
                "files": [{"role": "weights", "filename": filename, "format": "pth",
                           "checksum": {"sha256-prefix": prefix, "note": PREFIX_NOTE},
                           "sources": [{"url": member.url}]}],
                "license": "BSD-3-Clause", "license_note": TV_LICENSE_NOTE,
                "origin": f"https://github.com/pytorch/vision/blob/main/torchvision/models/{enum.__module__.rsplit('.', 1)[1]}.py",
                "paper": paper, "citation": citation,
                "preprocessing": {"input_size": [3, crop, crop], "resize": resize,
                                  "interpolation": t.interpolation.value, "mean": list(t.mean), "std": list(t.std),
                                  "channel_order": "RGB", "scale": 1.0},
                "head": {"num_classes": len(meta["categories"]), "labels": "imagenet-1k",
                         "classifier": classifier, "first_conv": first_conv},
                "metrics": [acc("top1", m["acc@1"], f"{IMAGENET_PROTOCOL}; resize {resize}, centre crop {crop}", src),
                            acc("top5", m["acc@5"], f"{IMAGENET_PROTOCOL}; resize {resize}, centre crop {crop}", src)],
                "params": meta["num_params"], "recipe": meta["recipe"],
                "tags": ["torchvision", "image-classification", "imagenet", f"gflops:{meta['_ops']}"],
                "card": f"{builder}.{tag}.md",
            })
    return entries


# ---------------------------------------------------------------------------------------------------
# timm: read from the installed library; accuracy from timm's results CSV.

TIMM_RESULTS = "huggingface/pytorch-image-models results/results-imagenet.csv @ 4e5207c"
TIMM = {
    # name: (top1, top5 at the entry's own crop size; paper; citation)
    "resnet50.a1_in1k": (80.382, 94.598, "https://arxiv.org/abs/2110.00476", CITE_RSB + "\n" + CITE_RESNET),
    "efficientnet_b0.ra_in1k": (77.698, 93.538, "https://arxiv.org/abs/1905.11946", CITE_EFFICIENTNET),
    "vit_small_patch16_224.augreg_in21k_ft_in1k": (81.402, 96.150, "https://arxiv.org/abs/2106.10270",
                                                   CITE_AUGREG + "\n" + CITE_VIT),
    "mobilenetv3_large_100.ra_in1k": (75.784, 92.528, "https://arxiv.org/abs/1905.02244", CITE_MOBILENETV3),
    "convnext_tiny.in12k_ft_in1k": (84.192, 97.132, "https://arxiv.org/abs/2201.03545", CITE_CONVNEXT),
}
SPDX = {"apache-2.0": "Apache-2.0", "mit": "MIT", "bsd-3-clause": "BSD-3-Clause", "cc-by-4.0": "CC-BY-4.0",
        "cc-by-nc-4.0": "CC-BY-NC-4.0"}
HF_NOTE = ("No commit hash is known offline, so the revision is 'main'; the Hub's LFS etag (the file's sha256) "
           "is checked on download and pinned in the cache the first time.")


def timm_entries() -> list[dict]:
    import timm
    from timm.models import get_pretrained_cfg

    entries = []
    for name, (top1, top5, paper, citation) in TIMM.items():
        cfg = get_pretrained_cfg(name).to_dict()
        arch, tag = name.split(".", 1)
        model = timm.create_model(arch, pretrained=False)
        params = sum(p.numel() for p in model.parameters())
        size = list(cfg["input_size"])
        # timm's eval transform: resize the shorter side to floor(crop / crop_pct), then centre-crop.
        resize = math.floor(size[1] / cfg["crop_pct"])
        protocol = f"{IMAGENET_PROTOCOL}; resize {resize} ({cfg['interpolation']}), centre crop {size[1]}"
        entries.append({
            "name": name, "default": False,
            "description": (f"timm's pretrained {arch} weights, tag '{tag}', fetched from the Hugging Face Hub repo "
                            f"{cfg['hf_hub_id']}. {HF_NOTE} Not the default for '{arch}'."),
            "architecture": {"library": "timm", "builder": arch, "kwargs": {}},
            "files": [{"role": "weights", "filename": "model.safetensors", "format": "safetensors",
                       "sources": [{"hf": {"repo": cfg["hf_hub_id"], "filename": "model.safetensors",
                                           "revision": "main"}}]}],
            "license": SPDX[cfg["license"]],
            "license_note": f"timm's pretrained_cfg says license '{cfg['license']}'.",
            "origin": cfg.get("origin_url") or f"https://huggingface.co/{cfg['hf_hub_id']}",
            "paper": paper, "citation": citation,
            "preprocessing": {"input_size": size, "resize": resize, "interpolation": cfg["interpolation"],
                              "mean": list(cfg["mean"]), "std": list(cfg["std"]), "channel_order": "RGB",
                              "scale": 1.0},
            "head": {"num_classes": cfg["num_classes"], "labels": "imagenet-1k", "classifier": cfg["classifier"],
                     "first_conv": cfg["first_conv"]},
            "metrics": [acc("top1", top1, protocol, TIMM_RESULTS), acc("top5", top5, protocol, TIMM_RESULTS)],
            "params": params,
            "tags": ["timm", "image-classification", "imagenet"],
            "card": f"{name}.md",
        })
    return entries


def write(path: Path, entries: list[dict], comment: str) -> None:
    doc = {"schema": 1, "comment": comment, "entries": entries}
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(entries)} entries to {path.relative_to(ROOT)}")


def main() -> None:
    write(ENTRIES / "caffe.json", caffe_entries(),
          "The Caffe Model Zoo mirror. Generated by tools/gen_registry.py from the project's Caffe research notes.")
    write(ENTRIES / "torchvision.json", torchvision_entries(),
          "torchvision weights. Generated by tools/gen_registry.py from the installed torchvision's weight enums.")
    write(ENTRIES / "timm.json", timm_entries(),
          "timm weights on the Hugging Face Hub. Generated by tools/gen_registry.py from the installed timm.")


if __name__ == "__main__":
    main()

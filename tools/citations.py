"""BibTeX citations shared by the built-in entries (data for ``gen_registry.py`` and ``caffe_entries.py``)."""

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

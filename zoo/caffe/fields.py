"""Caffe's message schema as data: field numbers, names, kinds and enums (no caffe.proto, no generated code).

Owns: ``SCHEMA`` (message -> field number -> name, kind, repeated, sub-message or enum), ``TEXT_ONLY``
(fields known by name in the text format only), ``ENUMS`` and ``V1_TYPES`` (legacy layer type numbers
-> the current type strings). Field numbers are those of BVLC Caffe's ``caffe.proto`` (the project's
research notes on the Caffe format list them). Tables only: the readers are ``proto`` and ``prototxt``.
Standard library only.
"""

from __future__ import annotations

__all__ = ["SCHEMA", "TEXT_ONLY", "ENUMS", "V1_TYPES"]

# message -> {field number: (name, kind, repeated, message-or-enum name)}.
# kinds: string, bytes, int32, uint32, int64, bool, enum, float, double, message. Fields not listed
# are skipped, as protobuf requires (forks add their own).
_R, _S = True, False

SCHEMA: dict[str, dict[int, tuple[str, str, bool, str | None]]] = {
    "NetParameter": {
        1: ("name", "string", _S, None), 3: ("input", "string", _R, None),
        8: ("input_shape", "message", _R, "BlobShape"), 4: ("input_dim", "int32", _R, None),
        6: ("state", "message", _S, "NetState"), 100: ("layer", "message", _R, "LayerParameter"),
        2: ("layers", "message", _R, "V1LayerParameter"),
    },
    "NetState": {1: ("phase", "enum", _S, "Phase"), 2: ("level", "int32", _S, None),
                 3: ("stage", "string", _R, None)},
    "NetStateRule": {1: ("phase", "enum", _S, "Phase"), 2: ("min_level", "int32", _S, None),
                     3: ("max_level", "int32", _S, None), 4: ("stage", "string", _R, None),
                     5: ("not_stage", "string", _R, None)},
    "BlobShape": {1: ("dim", "int64", _R, None)},
    # BlobProto's data fields are handled by _decode_blob (views into the file, never Python lists).
    "BlobProto": {7: ("shape", "message", _S, "BlobShape"), 1: ("num", "int32", _S, None),
                  2: ("channels", "int32", _S, None), 3: ("height", "int32", _S, None),
                  4: ("width", "int32", _S, None)},
    "LayerParameter": {
        1: ("name", "string", _S, None), 2: ("type", "string", _S, None),
        3: ("bottom", "string", _R, None), 4: ("top", "string", _R, None),
        10: ("phase", "enum", _S, "Phase"), 7: ("blobs", "message", _R, "BlobProto"),
        8: ("include", "message", _R, "NetStateRule"), 9: ("exclude", "message", _R, "NetStateRule"),
        100: ("transform_param", "message", _S, "TransformationParameter"),
        104: ("concat_param", "message", _S, "ConcatParameter"),
        106: ("convolution_param", "message", _S, "ConvolutionParameter"),
        108: ("dropout_param", "message", _S, "DropoutParameter"),
        110: ("eltwise_param", "message", _S, "EltwiseParameter"),
        135: ("flatten_param", "message", _S, "FlattenParameter"),
        117: ("inner_product_param", "message", _S, "InnerProductParameter"),
        143: ("input_param", "message", _S, "InputParameter"),
        118: ("lrn_param", "message", _S, "LRNParameter"),
        121: ("pooling_param", "message", _S, "PoolingParameter"),
        123: ("relu_param", "message", _S, "ReLUParameter"),
        142: ("scale_param", "message", _S, "ScaleParameter"),
        125: ("softmax_param", "message", _S, "SoftmaxParameter"),
        139: ("batch_norm_param", "message", _S, "BatchNormParameter"),
        107: ("data_param", "message", _S, "DataParameter"),
        131: ("prelu_param", "message", _S, "PReLUParameter"),
        144: ("crop_param", "message", _S, "CropParameter"),
        133: ("reshape_param", "message", _S, "ReshapeParameter"),
        126: ("slice_param", "message", _S, "SliceParameter"),
        122: ("power_param", "message", _S, "PowerParameter"),
        140: ("elu_param", "message", _S, "ELUParameter"),
    },
    "V1LayerParameter": {
        2: ("bottom", "string", _R, None), 3: ("top", "string", _R, None), 4: ("name", "string", _S, None),
        32: ("include", "message", _R, "NetStateRule"), 33: ("exclude", "message", _R, "NetStateRule"),
        5: ("type", "enum", _S, "V1LayerType"), 6: ("blobs", "message", _R, "BlobProto"),
        1: ("layer", "bytes", _S, None),  # V0 (pre-2014) layers: detected and refused
        9: ("concat_param", "message", _S, "ConcatParameter"),
        10: ("convolution_param", "message", _S, "ConvolutionParameter"),
        12: ("dropout_param", "message", _S, "DropoutParameter"),
        24: ("eltwise_param", "message", _S, "EltwiseParameter"),
        17: ("inner_product_param", "message", _S, "InnerProductParameter"),
        18: ("lrn_param", "message", _S, "LRNParameter"),
        19: ("pooling_param", "message", _S, "PoolingParameter"),
        30: ("relu_param", "message", _S, "ReLUParameter"),
        39: ("softmax_param", "message", _S, "SoftmaxParameter"),
        36: ("transform_param", "message", _S, "TransformationParameter"),
        11: ("data_param", "message", _S, "DataParameter"),
        21: ("power_param", "message", _S, "PowerParameter"),
        31: ("slice_param", "message", _S, "SliceParameter"),
    },
    "ConvolutionParameter": {
        1: ("num_output", "uint32", _S, None), 2: ("bias_term", "bool", _S, None),
        3: ("pad", "uint32", _R, None), 4: ("kernel_size", "uint32", _R, None),
        5: ("group", "uint32", _S, None), 6: ("stride", "uint32", _R, None),
        9: ("pad_h", "uint32", _S, None), 10: ("pad_w", "uint32", _S, None),
        11: ("kernel_h", "uint32", _S, None), 12: ("kernel_w", "uint32", _S, None),
        13: ("stride_h", "uint32", _S, None), 14: ("stride_w", "uint32", _S, None),
        15: ("engine", "enum", _S, None), 16: ("axis", "int32", _S, None),
        17: ("force_nd_im2col", "bool", _S, None), 18: ("dilation", "uint32", _R, None),
    },
    "PoolingParameter": {
        1: ("pool", "enum", _S, "PoolMethod"), 2: ("kernel_size", "uint32", _S, None),
        3: ("stride", "uint32", _S, None), 4: ("pad", "uint32", _S, None),
        5: ("kernel_h", "uint32", _S, None), 6: ("kernel_w", "uint32", _S, None),
        7: ("stride_h", "uint32", _S, None), 8: ("stride_w", "uint32", _S, None),
        9: ("pad_h", "uint32", _S, None), 10: ("pad_w", "uint32", _S, None),
        11: ("engine", "enum", _S, None), 12: ("global_pooling", "bool", _S, None),
        13: ("round_mode", "enum", _S, "RoundMode"),
    },
    "InnerProductParameter": {1: ("num_output", "uint32", _S, None), 2: ("bias_term", "bool", _S, None),
                              5: ("axis", "int32", _S, None), 6: ("transpose", "bool", _S, None)},
    "LRNParameter": {1: ("local_size", "uint32", _S, None), 2: ("alpha", "float", _S, None),
                     3: ("beta", "float", _S, None), 4: ("norm_region", "enum", _S, "NormRegion"),
                     5: ("k", "float", _S, None), 6: ("engine", "enum", _S, None)},
    "BatchNormParameter": {1: ("use_global_stats", "bool", _S, None),
                           2: ("moving_average_fraction", "float", _S, None), 3: ("eps", "float", _S, None)},
    "ScaleParameter": {1: ("axis", "int32", _S, None), 2: ("num_axes", "int32", _S, None),
                       4: ("bias_term", "bool", _S, None)},
    "EltwiseParameter": {1: ("operation", "enum", _S, "EltwiseOp"), 2: ("coeff", "float", _R, None),
                         3: ("stable_prod_grad", "bool", _S, None)},
    "ConcatParameter": {1: ("concat_dim", "uint32", _S, None), 2: ("axis", "int32", _S, None)},
    "DropoutParameter": {1: ("dropout_ratio", "float", _S, None)},
    "ReLUParameter": {1: ("negative_slope", "float", _S, None), 2: ("engine", "enum", _S, None)},
    "SoftmaxParameter": {1: ("engine", "enum", _S, None), 2: ("axis", "int32", _S, None)},
    "InputParameter": {1: ("shape", "message", _R, "BlobShape")},
    "FlattenParameter": {1: ("axis", "int32", _S, None), 2: ("end_axis", "int32", _S, None)},
    "TransformationParameter": {1: ("scale", "float", _S, None), 2: ("mirror", "bool", _S, None),
                                3: ("crop_size", "uint32", _S, None), 4: ("mean_file", "string", _S, None),
                                5: ("mean_value", "float", _R, None)},
    "PReLUParameter": {2: ("channel_shared", "bool", _S, None)},
    "CropParameter": {1: ("axis", "int32", _S, None), 2: ("offset", "uint32", _R, None)},
    "ReshapeParameter": {1: ("shape", "message", _S, "BlobShape"), 2: ("axis", "int32", _S, None),
                         3: ("num_axes", "int32", _S, None)},
    "SliceParameter": {1: ("slice_dim", "uint32", _S, None), 2: ("slice_point", "uint32", _R, None),
                       3: ("axis", "int32", _S, None)},
    "PowerParameter": {1: ("power", "float", _S, None), 2: ("scale", "float", _S, None),
                       3: ("shift", "float", _S, None)},
    "ELUParameter": {1: ("alpha", "float", _S, None)},
    "InterpParameter": {1: ("height", "int32", _S, None), 2: ("width", "int32", _S, None),
                        3: ("zoom_factor", "int32", _S, None), 4: ("shrink_factor", "int32", _S, None),
                        5: ("pad_beg", "int32", _S, None), 6: ("pad_end", "int32", _S, None)},
    "DataParameter": {1: ("source", "string", _S, None), 2: ("scale", "float", _S, None),
                      3: ("mean_file", "string", _S, None), 5: ("crop_size", "uint32", _S, None)},
}

ENUMS: dict[str, dict[str, int]] = {
    "Phase": {"TRAIN": 0, "TEST": 1},
    "PoolMethod": {"MAX": 0, "AVE": 1, "STOCHASTIC": 2},
    "RoundMode": {"CEIL": 0, "FLOOR": 1},
    "NormRegion": {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1},
    "EltwiseOp": {"PROD": 0, "SUM": 1, "MAX": 2},
    "Engine": {"DEFAULT": 0, "CAFFE": 1, "CUDNN": 2},
}

# Fields a fork added under a number that BVLC Caffe later gave to another field: known by name in the
# text format only. ``Interp`` (DeepLab, PSPNet) numbers ``interp_param`` 143, which is BVLC's
# ``input_param``; a binary file's Interp parameters are therefore not read (give the deploy .prototxt).
TEXT_ONLY: dict[str, dict[str, tuple[str, str, bool, str | None]]] = {
    "LayerParameter": {"interp_param": ("interp_param", "message", _S, "InterpParameter")},
}

# V1LayerParameter.LayerType -> the V2 type string (UpgradeV1LayerType).
V1_TYPES: dict[int, str] = {
    0: "", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout",
    7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 11: "Im2col", 12: "ImageData",
    13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 16: "MultinomialLogisticLoss", 17: "Pooling",
    18: "ReLU", 19: "Sigmoid", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split", 23: "TanH",
    24: "WindowData", 25: "Eltwise", 26: "Power", 27: "SigmoidCrossEntropyLoss", 28: "HingeLoss",
    29: "MemoryData", 30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice", 34: "MVN",
    35: "AbsVal", 36: "Silence", 37: "ContrastiveLoss", 38: "Exp", 39: "Deconvolution",
}
# The text format spells V1 types by their enum names.
ENUMS["V1LayerType"] = {
    "NONE": 0, "ACCURACY": 1, "BNLL": 2, "CONCAT": 3, "CONVOLUTION": 4, "DATA": 5, "DROPOUT": 6,
    "EUCLIDEAN_LOSS": 7, "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "IM2COL": 11, "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MULTINOMIAL_LOGISTIC_LOSS": 16, "POOLING": 17,
    "RELU": 18, "SIGMOID": 19, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22, "TANH": 23,
    "WINDOW_DATA": 24, "ELTWISE": 25, "POWER": 26, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "HINGE_LOSS": 28,
    "MEMORY_DATA": 29, "ARGMAX": 30, "THRESHOLD": 31, "DUMMY_DATA": 32, "SLICE": 33, "MVN": 34,
    "ABSVAL": 35, "SILENCE": 36, "CONTRASTIVE_LOSS": 37, "EXP": 38, "DECONVOLUTION": 39,
}

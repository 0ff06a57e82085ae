"""Caffe: read ``.caffemodel``/``.prototxt``/``.binaryproto`` files and turn them into PyTorch networks."""

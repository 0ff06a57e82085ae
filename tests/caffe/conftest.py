"""Fixtures for the Caffe tests: an independent writer (caffe-onnx's generated ``caffe_pb2``) and an
independent runtime (OpenCV's Caffe importer).

The generated module predates protobuf 3.19, so it loads only with the pure-python backend, chosen
by an environment variable that must be set before ``google.protobuf`` is first imported: it is set
here, at import time. If protobuf was already imported with another backend, nets are written by
``nets.py`` in a fresh process instead.

CI needs: ``pip install --no-deps caffe-onnx`` and ``pip install "opencv-python-headless<5" protobuf``.
"""

from __future__ import annotations

import os

os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"

import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import nets  # noqa: E402

_NO_WRITER = ("caffe-onnx is not installed (test-only writer of .caffemodel files): "
              "pip install --no-deps caffe-onnx")


def _writer_mode() -> str | None:
    """'inproc', 'subprocess', or None when caffe-onnx is absent."""
    if importlib.util.find_spec("proto") is None or importlib.util.find_spec("google.protobuf") is None:
        return None
    try:
        nets.load_pb2()
        return "inproc"
    except ImportError:
        return "subprocess"


WRITER = _writer_mode()


@pytest.fixture(scope="session")
def write_net(tmp_path_factory):
    """``write_net(name, seed=0) -> (deploy.prototxt, model.caffemodel)``, cached per session."""
    if WRITER is None:
        pytest.skip(_NO_WRITER)
    cache: dict[tuple[str, int], tuple[Path, Path]] = {}

    def write(name: str, seed: int = 0) -> tuple[Path, Path]:
        key = (name, seed)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"{name}_{seed}")
            if WRITER == "inproc":
                cache[key] = nets.write(name, seed, out)
            else:
                env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
                subprocess.run([sys.executable, str(HERE / "nets.py"), name, str(seed), str(out)], check=True,
                               env=env, timeout=120)
                cache[key] = (out / "deploy.prototxt", out / "model.caffemodel")
        return cache[key]

    return write


@pytest.fixture(scope="session")
def pb2():
    """The generated ``caffe_pb2`` module (in-process writer), or skip."""
    if WRITER is None:
        pytest.skip(_NO_WRITER)
    if WRITER != "inproc":
        pytest.skip("google.protobuf was imported with the upb backend before tests/caffe/conftest.py; "
                    "run tests/caffe in its own pytest process for the in-process writer tests")
    return nets.load_pb2()


@pytest.fixture(scope="session")
def cv2():
    """OpenCV with its Caffe importer (removed in OpenCV 5), or skip."""
    cv = pytest.importorskip("cv2", reason="OpenCV is not installed: pip install 'opencv-python-headless<5'")
    if not hasattr(cv, "dnn") or not hasattr(cv.dnn, "readNetFromCaffe"):
        pytest.skip(f"OpenCV {cv.__version__} has no Caffe importer (removed in 5.x): "
                    "pip install 'opencv-python-headless<5'")
    return cv


# Real Caffe nets, MNIST digits and photographs made by other people (../shared/real beside the
# repository; ZOO_REAL_DIR points elsewhere). Never copied into the project.
REAL = Path(os.environ.get("ZOO_REAL_DIR") or Path(__file__).resolve().parents[2] / ".." / "shared" / "real")


@pytest.fixture(scope="session")
def real():
    """The folder of real files, or skip."""
    if not (REAL / "caffe").is_dir():
        pytest.skip(f"the real Caffe files are not at {REAL} (../shared/real beside the repository; "
                    "ZOO_REAL_DIR=DIR points elsewhere)")
    return REAL

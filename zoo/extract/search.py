"""Nearest-neighbour search over a features file: ``similar``, behind ``zoo similar``.

Owns: ``similar`` (cosine similarity of query images against an index made by ``zoo extract``), and
the check that the queries go through the network, layer and pooling the index was made with.
Imports numpy and the Extractor; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import DataError
from .extractor import Extractor
from .fileformat import load_features
from .identity import producer

__all__ = ["similar"]


def similar(index: str | os.PathLike | dict[str, Any], images: Any, *, top_k: int = 5,
            extractor: Extractor | None = None, device: str = "auto") -> list[list[tuple[str, float]]]:
    """The ``top_k`` images of an extracted index nearest to each query image, by cosine similarity.

    The query's features come from the model, layer and pooling the index was built with (stored in
    the file), unless ``extractor`` is given; either way they must match the index's.

    Args:
        index: a features file (``zoo extract --out``) or what ``load_features`` returned.
        images: query images, anything ``Extractor`` takes.
        top_k: how many neighbours per query.
        extractor: reuse an existing extractor (it must match the index).
        device: for the extractor built here.

    Returns:
        For each query image, ``[(path, similarity), ...]`` best first (similarity in [-1, 1]).

    Raises:
        DataError: the index is empty or damaged, was made from an unnamed in-memory model and no
            ``extractor`` is given, or by another network, layer, pooling or feature width than the
            queries'.

    Example:
        >>> similar("feats.npz", "query.jpg", top_k=3)   # doctest: +SKIP
        [[('photos/cat7.jpg', 0.93), ('photos/cat2.jpg', 0.88), ('photos/cat1.jpg', 0.85)]]
    """
    where = "the index" if isinstance(index, dict) else str(index)
    data = index if isinstance(index, dict) else load_features(index)
    feats = data["features"]
    if feats.ndim != 2 or not len(feats):
        raise DataError(f"{where} holds no features to search.")
    if extractor is None:
        if not data["model_ref"]:
            raise DataError(f"{where} was made from an in-memory model ({data['model'] or 'unnamed'}), which "
                            "cannot be loaded by name; pass extractor=Extractor(that_model, layer=...).")
        extractor = Extractor(data["model_ref"], layer=data["layer"], pool=data["pool"], device=device)
    _check_match(where, data, extractor)
    query = np.asarray(extractor(images), dtype=np.float32)
    query = query.reshape(query.shape[0], -1)
    if query.shape[1] != feats.shape[1]:
        raise DataError(f"the query features have {query.shape[1]} values but {where} has {feats.shape[1]}: "
                        "use the model and layer the index was built with, or extract the index again.")
    eps = 1e-12
    q = query / (np.linalg.norm(query, axis=1, keepdims=True) + eps)
    f = feats / (np.linalg.norm(feats, axis=1, keepdims=True) + eps)
    scores = q @ f.T
    k = min(top_k, scores.shape[1])
    results = []
    for row in scores:
        top = np.argpartition(-row, k - 1)[:k]
        top = top[np.argsort(-row[top], kind="stable")]
        results.append([(data["paths"][i], float(row[i])) for i in top])
    return results


def _check_match(where: str, data: dict[str, Any], ex: Extractor) -> None:
    """The extractor must be the index's: same layer and pooling, and (when the index recorded them)
    the same weights and preprocessing digests."""
    asked = (ex.layer_names[0] if not ex.multi else ex.layer_names, ex.pool)
    if data.get("layer") and (data["layer"], data["pool"]) != asked:
        raise DataError(f"{where} holds layer {data['layer']} (pool {data['pool']}) but the queries would come "
                        f"from layer {asked[0]} (pool {asked[1]}): use the index's layer and pooling.")
    made_by = {key: data.get(key, "") for key in ("weights", "preprocessing")}
    if all(made_by.values()) and made_by != producer(ex.model):
        raise DataError(f"{where} was made by other weights or preprocessing than {ex.name}'s now (the model "
                        "behind the name changed, or another model): extract the index again with "
                        "`zoo extract`, or query it with the model that made it.")

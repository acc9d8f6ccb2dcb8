"""Tiny ONNX image encoders built with onnx.helper, for tests: no weights are downloaded, ever.

`average_pool_model` is a real encoder in miniature: it averages the NCHW input over 4x4 blocks and
multiplies the flattened result by a fixed random matrix (seeded), giving one 32-number vector per
image, as a CLIP or DINOv2 export gives its pooled embedding. `reference_vectors` computes the same in
numpy, so a test can check what the service sends the model and what it stores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

POOL = 4  # AveragePool kernel and stride


def projection(side: int, dimension: int, seed: int) -> np.ndarray:
    cells = 3 * (side // POOL) ** 2
    return np.random.default_rng(seed).standard_normal((cells, dimension)).astype(np.float32)


def average_pool_model(path: Path, *, side: int | str = 32, dimension: int = 32, seed: int = 0,
                       batch: int | str = "batch", feature_map_first: bool = True) -> Path:
    """Write the model to `path`. `side`/`batch` may be ints (fixed) or names (dynamic; a dynamic side is
    computed at 224, the service's default). With `feature_map_first`, output 0 is the pooled feature map
    (rank 4), so the embedding is the first output of rank 2, not the first output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight_side = side if isinstance(side, int) else 224
    weights = projection(weight_side, dimension, seed)
    nodes = [
        helper.make_node("AveragePool", ["pixels"], ["pooled"], kernel_shape=[POOL, POOL], strides=[POOL, POOL]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "projection"], ["embedding"]),
    ]
    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, dimension])]
    if feature_map_first:
        pooled_side = side // POOL if isinstance(side, int) else "pooled_side"
        outputs.insert(0, helper.make_tensor_value_info("pooled", TensorProto.FLOAT,
                                                        [batch, 3, pooled_side, pooled_side]))
    graph = helper.make_graph(
        nodes, "average_pool_encoder",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 3, side, side])],
        outputs,
        initializer=[numpy_helper.from_array(weights, "projection")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime of the last years
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def reference_vectors(pixels: np.ndarray, dimension: int = 32, seed: int = 0) -> np.ndarray:
    """What average_pool_model computes for an NCHW batch, L2-normalised as the service stores it."""
    n, channels, side, _ = pixels.shape
    pooled = pixels.reshape(n, channels, side // POOL, POOL, side // POOL, POOL).mean(axis=(3, 5))
    vectors = pooled.reshape(n, -1) @ projection(side, dimension, seed)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

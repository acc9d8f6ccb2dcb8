"""Embedders: the descriptor and ONNX models (built here with onnx.helper), and the checks at load."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from searchjobs.catalog import descriptor
from searchjobs.catalog.embedders import (
    DescriptorEmbedder,
    Embedders,
    EmbedderUnavailable,
    OnnxEmbedder,
    load_embedder,
)
from searchjobs.config import Settings
from searchjobs.errors import ConfigError
from tests.onnx_models import average_pool_model, reference_vectors


def photo(width: int = 60, height: int = 40, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def test_the_default_embedder_is_the_descriptor():
    assert Settings.from_env({}).embedder == "descriptor"
    embedder = load_embedder("descriptor")
    assert isinstance(embedder, DescriptorEmbedder)
    assert (embedder.name, embedder.dimension) == (descriptor.DESCRIPTOR_VERSION, descriptor.DESCRIPTOR_DIM)
    image = photo()
    assert np.array_equal(embedder.embed(image), descriptor.describe(image))


def test_an_onnx_model_gets_square_rgb_nchw_in_0_1_and_its_output_is_normalised(tmp_path):
    path = average_pool_model(tmp_path / "encoder.onnx")
    embedder = load_embedder(f"onnx:{path}")
    assert embedder.name == "onnx:" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert embedder.dimension == 32 and embedder.size == 32 and embedder.spec == f"onnx:{path.resolve()}"

    # a 60x40 photo: shorter side to 32 (48x32), then the centre 32x32
    image = photo()
    resized = np.asarray(image.resize((48, 32), Image.Resampling.BICUBIC), dtype=np.float32)[:, 8:40] / 255.0
    expected = reference_vectors(resized.transpose(2, 0, 1)[None])[0]
    vector = embedder.embed(image)
    assert vector.dtype == np.float32 and vector.shape == (32,)
    assert np.allclose(vector, expected, atol=1e-5)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5

    many = embedder.embed_many([photo(seed=s) for s in range(40)])  # more than one batch of ONNX_BATCH
    assert many.shape == (40, 32)
    assert np.allclose(many[3], embedder.embed(photo(seed=3)), atol=1e-6)
    assert embedder.embed_many([]).shape == (0, 32)


def test_transparency_is_flattened_onto_white(tmp_path):
    embedder = load_embedder(f"onnx:{average_pool_model(tmp_path / 'm.onnx')}")
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    assert np.allclose(embedder.embed(clear), embedder.embed(white), atol=1e-6)


def test_a_dynamic_input_size_is_fed_224_and_a_fixed_batch_of_one_works(tmp_path):
    dynamic = load_embedder(f"onnx:{average_pool_model(tmp_path / 'd.onnx', side='side')}")
    assert dynamic.size == 224 and dynamic.dimension == 32
    single = load_embedder(f"onnx:{average_pool_model(tmp_path / 's.onnx', batch=1)}")
    assert single.batch == 1
    assert single.embed_many([photo(seed=s) for s in range(3)]).shape == (3, 32)


def test_the_dimension_comes_from_the_model(tmp_path):
    embedder = load_embedder(f"onnx:{average_pool_model(tmp_path / 'm.onnx', dimension=512)}")
    assert embedder.dimension == 512 and embedder.embed(photo()).shape == (512,)


def _broken_model(path, kind: str):
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, 32, 32])
    if kind == "two inputs":
        inputs = [image, helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["n", 1, 32, 32])]
        nodes = [helper.make_node("Add", ["pixels", "mask"], ["out"])]
        outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3, 32, 32])]
    elif kind == "integer input":
        inputs = [helper.make_tensor_value_info("pixels", TensorProto.INT64, ["n", 3, 32, 32])]
        nodes = [helper.make_node("Identity", ["pixels"], ["out"])]
        outputs = [helper.make_tensor_value_info("out", TensorProto.INT64, ["n", 3, 32, 32])]
    elif kind == "one channel":
        inputs = [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 1, 32, 32])]
        nodes = [helper.make_node("Flatten", ["pixels"], ["out"])]
        outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 1024])]
    elif kind == "not square":
        inputs = [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, 32, 48])]
        nodes = [helper.make_node("Flatten", ["pixels"], ["out"])]
        outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 4608])]
    elif kind == "no pooled output":
        inputs = [image]
        nodes = [helper.make_node("Identity", ["pixels"], ["out"])]
        outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3, 32, 32])]
    elif kind == "too many dimensions":
        inputs = [image]
        nodes = [helper.make_node("Flatten", ["pixels"], ["out"])]  # 3 x 32 x 32 = 3072 > 2000
        outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", "d"])]
    model = helper.make_model(helper.make_graph(nodes, kind, inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("kind, message", [
    ("two inputs", "must have one input"),
    ("integer input", "must be float32"),
    ("one channel", "3 channels first"),
    ("not square", "must be square"),
    ("no pooled output", r"no output is one pooled vector per image \(\[batch, D\]\)"),
    ("too many dimensions", "3072 dimensions; pgvector indexes 1..2000"),
])
def test_a_model_that_does_not_fit_is_a_config_error_naming_the_setting(tmp_path, kind, message):
    path = _broken_model(tmp_path / "m.onnx", kind)
    with pytest.raises(ConfigError, match=message) as info:
        load_embedder(f"onnx:{path}")
    assert info.value.message.startswith(f"SEARCHJOBS_EMBEDDER=onnx:{path}: ")


def test_a_file_that_is_no_model_or_is_missing_is_refused(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="onnxruntime cannot load it"):
        load_embedder(f"onnx:{junk}")
    with pytest.raises(ConfigError, match="--embedder=onnx:.*missing.onnx: the model file does not exist"):
        load_embedder(f"onnx:{tmp_path / 'missing.onnx'}", setting="--embedder")


@pytest.mark.parametrize("value, message", [
    ("clip", "SEARCHJOBS_EMBEDDER must be 'descriptor' or 'onnx:/path/to/model.onnx', got 'clip'"),
    ("onnx:", "SEARCHJOBS_EMBEDDER must be 'descriptor' or 'onnx:/path/to/model.onnx'"),
    ("onnx:/no/such/model.onnx", "SEARCHJOBS_EMBEDDER=onnx:/no/such/model.onnx: the model file does not exist"),
])
def test_a_bad_setting_is_refused_when_the_settings_are_read(value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env({"SEARCHJOBS_EMBEDDER": value})


def test_a_worker_refuses_an_active_embedder_it_cannot_load_as_recorded(tmp_path):
    path = average_pool_model(tmp_path / "m.onnx")
    recorded = OnnxEmbedder(path)
    embedders = Embedders(DescriptorEmbedder())
    assert embedders.named(recorded.name, recorded.spec).name == recorded.name  # loaded from its spec
    assert embedders.named(recorded.name, "ignored once loaded") is embedders.named(recorded.name, recorded.spec)

    fresh = Embedders(DescriptorEmbedder())
    average_pool_model(path, seed=1)  # another model at the same path: its vectors would not compare
    with pytest.raises(EmbedderUnavailable, match=f"active embedder is {recorded.name}, but onnx:.* here is onnx:"):
        fresh.named(recorded.name, recorded.spec)
    path.unlink()
    with pytest.raises(EmbedderUnavailable, match="cannot be loaded here: .*does not exist"):
        fresh.named(recorded.name, recorded.spec)

"""Embedders: what turns an image into the vector a search compares.

Two kinds, chosen by a spec (SEARCHJOBS_EMBEDDER, or `catalog reembed --embedder`):

  descriptor             our own image descriptor (searchjobs.catalog.descriptor), the default
  onnx:/path/model.onnx  an image encoder exported to ONNX (a CLIP or DINOv2 image tower), run on the
                         CPU by onnxruntime

Every embedder has a name that says exactly which vectors it makes (the descriptor's version, or
"onnx:" and 12 hex digits of the model file's sha256); each stored vector records it, and a search
compares a query only with vectors of the same name (searchjobs.catalog.store).

What an ONNX model gets and must give:
  input   one input, float32, NCHW [batch, 3, S, S]: RGB scaled to 0..1 (transparency flattened onto
          white), the image's shorter side resized to S (bicubic), then the centre S x S crop. S is the
          model's fixed input size, or 224 when the size is dynamic. The batch may be fixed (often 1)
          or dynamic. No mean/std normalisation is applied: put the model's own in the exported graph.
  output  the first output of rank 2, [batch, D]: one pooled vector per image (CLIP's image_embeds,
          DINOv2's pooled CLS token). D comes from the model (its output shape, or one inference),
          1..2000 (pgvector's HNSW limit). We L2-normalise it; cosine is the score.
A model that does not fit is refused when it is loaded, at process start, naming the setting.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import sqlalchemy as sa
from PIL import Image

from searchjobs.catalog import descriptor
from searchjobs.catalog import store as catalog
from searchjobs.errors import ConfigError, DependencyUnavailable

log = logging.getLogger(__name__)

DESCRIPTOR_SPEC = "descriptor"
ONNX_PREFIX = "onnx:"
MAX_DIMENSION = 2000  # pgvector indexes `vector` columns of at most 2,000 dimensions
ONNX_DEFAULT_SIZE = 224  # input side for models whose input size is dynamic (CLIP and DINOv2 ViT-B use it)
ONNX_MAX_SIZE = 1024  # larger fixed inputs are refused: a typo, or a model far too slow for a CPU worker
ONNX_BATCH = 16  # images per inference when the model's batch is dynamic
NAME_HASH_CHARS = 12  # hex digits of the model file's sha256 in an ONNX embedder's name
FLATTEN_BACKGROUND = (255, 255, 255)  # transparent pixels become white, as the descriptor does


class Embedder(Protocol):
    name: str  # identifies the vectors it makes; stored with each of them
    dimension: int
    spec: str  # how to load it again: "descriptor" or "onnx:/absolute/path.onnx"

    def embed_many(self, images: Sequence[Image.Image]) -> np.ndarray:
        """float32 (len(images), dimension), each row L2-normalised."""

    def embed(self, image: Image.Image) -> np.ndarray:
        """float32 (dimension,), L2-normalised."""


class EmbedderUnavailable(DependencyUnavailable):
    """The catalog's active embedder cannot be loaded in this process; another worker may have it."""

    code = "embedder_unavailable"


class DescriptorEmbedder:
    """Our own descriptor: no model file, deterministic, colour/layout/pattern (see descriptor.py)."""

    spec = DESCRIPTOR_SPEC

    def __init__(self):
        self.name = descriptor.DESCRIPTOR_VERSION
        self.dimension = descriptor.DESCRIPTOR_DIM

    def embed_many(self, images: Sequence[Image.Image]) -> np.ndarray:
        return descriptor.describe_many(images)

    def embed(self, image: Image.Image) -> np.ndarray:
        return descriptor.describe(image)


class OnnxEmbedder:
    """An ONNX image encoder on onnxruntime's CPU provider; the module docstring says what it must take."""

    def __init__(self, path: Path, setting: str = "SEARCHJOBS_EMBEDDER"):
        self.path = path.resolve()
        self.spec = f"{ONNX_PREFIX}{self.path}"
        self._setting = setting
        if not self.path.is_file():
            raise self._refuse("the model file does not exist")
        try:
            import onnxruntime
        except ImportError as exc:
            raise self._refuse("onnxruntime is not installed (pip install onnxruntime)") from exc
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own, unexported error types
            raise self._refuse(f"onnxruntime cannot load it: {exc}") from exc
        self.size, self.batch = self._check_input()
        self._output, declared = self._check_output()
        self.name = f"{ONNX_PREFIX}{_sha256(self.path)[:NAME_HASH_CHARS]}"
        self.dimension = self._probe(declared)

    def _refuse(self, why: str) -> ConfigError:
        return ConfigError(f"{self._setting}={self.spec}: {why}")

    def _check_input(self) -> tuple[int, int | None]:
        """(input side S, fixed batch size or None for a dynamic one)."""
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise self._refuse(f"the model must have one input (an NCHW image batch), it has {len(inputs)}: "
                               f"{', '.join(i.name for i in inputs)}")
        tensor = inputs[0]
        if tensor.type != "tensor(float)":
            raise self._refuse(f"its input {tensor.name!r} must be float32 (tensor(float)), not {tensor.type}")
        shape = tensor.shape
        if len(shape) != 4:
            raise self._refuse(f"its input {tensor.name!r} must be NCHW [batch, 3, S, S], its shape is {shape}")
        batch, channels, height, width = (d if isinstance(d, int) and d > 0 else None for d in shape)
        if channels != 3:
            raise self._refuse(f"its input {tensor.name!r} must take 3 channels first (NCHW RGB), "
                               f"its shape is {shape}")
        if height is not None and width is not None and height != width:
            raise self._refuse(f"its input must be square ([batch, 3, S, S]), its shape is {shape}")
        size = height or width or ONNX_DEFAULT_SIZE
        if size > ONNX_MAX_SIZE:
            raise self._refuse(f"its input side {size} is over {ONNX_MAX_SIZE}")
        return size, batch

    def _check_output(self) -> tuple[str, int | None]:
        """(the first rank-2 output's name, its declared dimension if fixed)."""
        outputs = self.session.get_outputs()
        for output in outputs:
            if len(output.shape) == 2:
                if output.type != "tensor(float)":
                    raise self._refuse(f"its output {output.name!r} must be float32, not {output.type}")
                dimension = output.shape[1]
                return output.name, dimension if isinstance(dimension, int) and dimension > 0 else None
        shapes = ", ".join(f"{o.name} {o.shape}" for o in outputs)
        raise self._refuse(f"no output is one pooled vector per image ([batch, D]); it has {shapes}")

    def _probe(self, declared: int | None) -> int:
        """Run the model once on a grey image: it must give one finite vector of the declared dimension."""
        probe = Image.new("RGB", (self.size, self.size), (128, 128, 128))
        try:
            vector = self._run(self._pixels([probe]))
        except Exception as exc:
            raise self._refuse(f"a test inference failed: {exc}") from exc
        if vector.ndim != 2 or vector.shape[0] != 1:
            raise self._refuse(f"one image gave an output of shape {list(vector.shape)}, not [1, D]")
        dimension = int(vector.shape[1])
        if declared is not None and dimension != declared:
            raise self._refuse(f"its output declares {declared} dimensions but gives {dimension}")
        if not 1 <= dimension <= MAX_DIMENSION:
            raise self._refuse(f"its vectors have {dimension} dimensions; pgvector indexes 1..{MAX_DIMENSION}")
        if not np.isfinite(vector).all():
            raise self._refuse("a test inference gave non-finite values")
        return dimension

    def _pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([_square_rgb(image, self.size) for image in images]).astype(np.float32)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        name = self.session.get_inputs()[0].name
        return np.asarray(self.session.run([self._output], {name: pixels})[0], dtype=np.float32)

    def embed_many(self, images: Sequence[Image.Image]) -> np.ndarray:
        images = list(images)
        if not images:
            return np.zeros((0, self.dimension), dtype=np.float32)
        step = self.batch or ONNX_BATCH
        vectors = np.concatenate([self._run(self._pixels(images[i:i + step])) for i in range(0, len(images), step)])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)

    def embed(self, image: Image.Image) -> np.ndarray:
        return self.embed_many([image])[0]


def _square_rgb(image: Image.Image, size: int) -> np.ndarray:
    """[3, size, size] float in 0..1: shorter side resized to `size`, centre crop."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, FLATTEN_BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    image = image.convert("RGB")
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_embedder(spec: str, setting: str = "SEARCHJOBS_EMBEDDER") -> Embedder:
    """The embedder a spec names, loaded and checked; a spec or model that does not fit raises ConfigError."""
    if spec == DESCRIPTOR_SPEC:
        return DescriptorEmbedder()
    path = spec[len(ONNX_PREFIX):].strip() if spec.startswith(ONNX_PREFIX) else ""
    if not path:
        raise ConfigError(f"{setting} must be {DESCRIPTOR_SPEC!r} or 'onnx:/path/to/model.onnx', got {spec!r}")
    return OnnxEmbedder(Path(path).expanduser(), setting)


class Embedders:
    """The embedders one process has loaded, by name; work uses the catalog's active one.

    The active embedder is recorded in Postgres (catalog_state), so a switch reaches every worker on
    every machine at once: each job reads it, and one that is not the configured embedder is loaded
    from the spec recorded with it (the same model file at the same path on every machine). If it
    cannot be loaded here, the job is put back for another worker (EmbedderUnavailable): no search
    ever embeds with one embedder and compares with another's vectors.
    """

    def __init__(self, configured: Embedder):
        self.configured = configured
        self._loaded: dict[str, Embedder] = {configured.name: configured}

    def active(self, engine: sa.Engine) -> Embedder:
        with engine.connect() as conn:
            state = catalog.active_embedder(conn)
        return self.named(state.name, state.spec)

    def named(self, name: str, spec: str) -> Embedder:
        """The embedder called `name`, loading `spec` if this process has not yet."""
        found = self._loaded.get(name)
        if found is not None:
            return found
        try:
            found = load_embedder(spec, setting="the active embedder's spec")
        except ConfigError as exc:
            log.error("cannot load the catalog's active embedder", extra={"embedder": name, "error": str(exc)})
            raise EmbedderUnavailable(f"the catalog's active embedder {name} cannot be loaded here: {exc}") from exc
        if found.name != name:
            log.error("the active embedder's spec now loads another embedder",
                      extra={"embedder": name, "spec": spec, "loaded": found.name})
            raise EmbedderUnavailable(f"the catalog's active embedder is {name}, but {spec} here is {found.name}: "
                                      f"run `searchjobs catalog reembed --embedder {spec}`")
        self._loaded[name] = found
        return found

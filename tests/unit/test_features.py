"""The image descriptor: contract (shape, norm, determinism), input modes, and retrieval quality."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench.perturb import perturb
from searchjobs.catalog import demo, descriptor
from searchjobs.errors import SearchJobsError

CATALOG_SIZE = 150  # 15 items per category: enough for top-5 to mean something, still ~2 s
CATALOG_SEED = 3
PERTURBED_QUERIES = 40


@pytest.fixture(scope="module")
def catalog():
    items = list(demo.generate_items(CATALOG_SIZE, seed=CATALOG_SEED))
    images = [Image.open(io.BytesIO(item.image_png)).convert("RGB") for item in items]
    vectors = descriptor.describe_many(images)
    categories = np.array([item.category for item in items])
    return items, images, vectors, categories


def rank_in_category(vectors, categories, index: int, query: np.ndarray) -> int:
    """0-based rank of item `index` when `query` is searched among its category by cosine."""
    pool = np.flatnonzero(categories == categories[index])
    scores = vectors[pool] @ query
    own = scores[np.flatnonzero(pool == index)[0]]
    return int((scores > own).sum())


def solid(colour: str, seed: int = 0, category: str = "dress") -> Image.Image:
    return demo.render_item_image(category, colour, "solid", np.random.default_rng(seed))


def test_contract_constants():
    assert isinstance(descriptor.DESCRIPTOR_VERSION, str) and descriptor.DESCRIPTOR_VERSION
    assert 0 < descriptor.DESCRIPTOR_DIM <= 512


def test_shape_dtype_and_unit_norm(catalog):
    _, images, vectors, _ = catalog
    vector = descriptor.describe(images[0])
    assert vector.shape == (descriptor.DESCRIPTOR_DIM,)
    assert vector.dtype == np.float32
    assert np.isfinite(vector).all()
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert vectors.shape == (CATALOG_SIZE, descriptor.DESCRIPTOR_DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_deterministic_for_the_same_bytes(catalog):
    items, images, vectors, _ = catalog
    data = items[7].image_png
    first, second = descriptor.describe_bytes(data), descriptor.describe_bytes(data)
    assert np.array_equal(first, second)
    # Decoding ourselves and describing gives the very same vector, as does the batch.
    assert np.array_equal(first, descriptor.describe(images[7]))
    assert np.array_equal(first, vectors[7])


def test_describe_many_matches_describe_row_by_row(catalog):
    _, images, vectors, _ = catalog
    batch = descriptor.describe_many(iter(images[:5]))
    for row, image in zip(batch, images[:5], strict=True):
        assert np.array_equal(row, descriptor.describe(image))
    assert descriptor.describe_many([]).shape == (0, descriptor.DESCRIPTOR_DIM)


def test_every_unperturbed_image_finds_itself_first(catalog):
    _, _, vectors, categories = catalog
    ranks = [rank_in_category(vectors, categories, i, vectors[i]) for i in range(CATALOG_SIZE)]
    assert max(ranks) == 0


def test_perturbed_images_are_found_in_the_top_five(catalog):
    _, images, vectors, categories = catalog
    rng = np.random.default_rng(CATALOG_SEED)
    chosen = rng.choice(CATALOG_SIZE, size=PERTURBED_QUERIES, replace=False)
    ranks = np.array(
        [rank_in_category(vectors, categories, i, descriptor.describe(perturb(images[i], rng))) for i in chosen]
    )
    # Measured 40/40 at rank 0 for this seed; the bounds leave room for platform rounding.
    assert (ranks < 5).mean() >= 0.95
    assert (ranks < 1).mean() >= 0.85


def test_different_colours_give_clearly_different_vectors():
    red, red_again, navy, green = solid("red"), solid("red", seed=1), solid("navy"), solid("green")
    v_red, v_red_again = descriptor.describe(red), descriptor.describe(red_again)
    v_navy, v_green = descriptor.describe(navy), descriptor.describe(green)
    same_colour = float(v_red @ v_red_again)  # another red dress: other proportions
    assert float(v_red @ v_navy) < same_colour - 0.2
    assert float(v_red @ v_green) < same_colour - 0.2
    assert float(v_red @ v_navy) < 0.8


def test_brightness_change_keeps_vector_close():
    image = solid("teal")
    darker = Image.fromarray((np.asarray(image, dtype=np.float32) * 0.8).astype(np.uint8))
    assert float(descriptor.describe(image) @ descriptor.describe(darker)) > 0.9


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "1", "CMYK", "I;16", "I", "F"])
def test_other_image_modes_work(mode):
    image = solid("mustard").convert("L" if mode in ("I;16", "I", "F") else "RGB").convert(mode)
    vector = descriptor.describe(image)
    assert vector.shape == (descriptor.DESCRIPTOR_DIM,) and vector.dtype == np.float32
    assert np.isfinite(vector).all()
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_transparency_is_flattened_on_white():
    rgb = solid("red")
    # The same picture with a transparent backdrop: alpha 0 where the pixel is the (light) background.
    pixels = np.asarray(rgb)
    alpha = np.where(pixels.min(axis=-1) > 225, 0, 255).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([pixels, alpha]))
    on_white = Image.fromarray(np.where(alpha[..., None] == 0, 255, pixels).astype(np.uint8))
    assert np.allclose(descriptor.describe(rgba), descriptor.describe(on_white), atol=1e-6)
    # A fully opaque RGBA image is the RGB image.
    assert np.array_equal(descriptor.describe(rgb.convert("RGBA")), descriptor.describe(rgb))


def test_palette_with_transparency_and_degenerate_images_work():
    palette = solid("purple").convert("P")
    palette.info["transparency"] = 0
    for image in (palette, Image.new("RGB", (1, 1), (10, 20, 30)), Image.new("RGB", (300, 7), "white"),
                  Image.new("L", (50, 50), 0)):
        vector = descriptor.describe(image)
        assert np.isfinite(vector).all()
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_describe_bytes_accepts_jpeg_and_follows_exif_orientation():
    image = solid("coral", category="shoes")
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    plain = descriptor.describe_bytes(buf.getvalue())
    # Stored rotated, with the tag that says how to turn it back (6 = rotate 90 degrees clockwise).
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=90, exif=exif)
    tagged = descriptor.describe_bytes(buf.getvalue())
    assert float(plain @ tagged) > 0.98


def test_undecodable_bytes_raise_a_project_error():
    with pytest.raises(descriptor.ImageDecodeError) as info:
        descriptor.describe_bytes(b"not an image at all")
    assert isinstance(info.value, SearchJobsError)
    assert info.value.code == "image_unreadable"

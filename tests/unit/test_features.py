"""The image descriptor: contract (shape, norm, determinism), input modes, and retrieval quality."""

from __future__ import annotations

import io
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from bench.perturb import perturb
from searchjobs import intake
from searchjobs.catalog import demo, descriptor, embedders, load
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
    assert 0 < descriptor.DESCRIPTOR_DIM <= embedders.MAX_DIMENSION  # pgvector's HNSW limit


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
    first, second = load.describe_bytes(data), load.describe_bytes(data)
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
    query = descriptor.describe(darker)
    # centred blocks spread cosines over -1..1, so "close" is a ranking: teal stays nearer than any other colour
    scores = {name: float(query @ descriptor.describe(solid(name, seed=1))) for name in demo.PALETTE}
    assert max(scores, key=scores.get) == "teal"
    assert float(query @ descriptor.describe(image)) > 0.75


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
    plain = load.describe_bytes(buf.getvalue())
    # Stored rotated, with the tag that says how to turn it back (6 = rotate 90 degrees clockwise).
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=90, exif=exif)
    tagged = load.describe_bytes(buf.getvalue())
    assert float(plain @ tagged) > 0.98


def test_undecodable_bytes_raise_a_project_error():
    with pytest.raises(intake.ImageError) as info:
        load.describe_bytes(b"not an image at all")
    assert isinstance(info.value, SearchJobsError)
    assert info.value.code == "image_unreadable"


# ---------------------------------------------------------------------------
# Isolating the garment, the colours it reports, its fabric (garment-v3)
# ---------------------------------------------------------------------------


def garment_on_wall(garment=(200, 30, 40), wall=(150, 150, 146), size=(300, 400), light=False) -> Image.Image:
    """A plain garment shape on a wall, optionally under a light falloff from left to right."""
    from PIL import ImageDraw

    image = Image.new("RGB", size, wall)
    w, h = size
    ImageDraw.Draw(image).polygon([(w * 0.38, h * 0.2), (w * 0.62, h * 0.2), (w * 0.75, h * 0.8), (w * 0.25, h * 0.8)],
                                  fill=garment)
    if light:
        ramp = np.linspace(0.7, 1.1, w, dtype=np.float32)[None, :, None]
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) * ramp, 0, 255).astype(np.uint8))
    return image


def test_isolate_cuts_the_garment_out_of_the_wall():
    garment = descriptor.isolate(garment_on_wall())
    rgb, weight = garment.rgb, garment.weight
    assert rgb.shape == (descriptor.WORK_SIZE, descriptor.WORK_SIZE, 3) and weight.shape == rgb.shape[:2]
    # Cropped to the garment: it fills the frame's middle, the corners (outside the trapezoid) are backdrop.
    middle = weight[24:40, 24:40]
    assert middle.min() > 0.9
    assert weight[:6, :6].mean() < 0.1 and weight[:6, -6:].mean() < 0.1
    # The backdrop the blocks see is the neutral one, not the wall's grey.
    assert np.allclose(rgb[2, 2], descriptor.NEUTRAL, atol=0.02)


def test_a_red_garment_on_a_grey_wall_reports_red_first():
    analysis = descriptor.analyse(garment_on_wall(light=True))
    first = analysis.colours[0]
    assert first["name"] == "red" and first["share"] >= 0.7
    r, g, b = (int(first["hex"][i:i + 2], 16) for i in (1, 3, 5))
    assert r > 120 and g < 70 and b < 80
    # The wall's grey is not among the garment's colours, and the vector is the one describe() gives.
    assert all(c["name"] not in ("grey", "light grey") for c in analysis.colours)
    assert np.array_equal(analysis.vector, descriptor.describe(garment_on_wall(light=True)))


def test_swatches_are_valid_sorted_and_named():
    image = np.asarray(garment_on_wall(garment=(30, 40, 90)), dtype=np.uint8).copy()
    garment = (image == (30, 40, 90)).all(axis=-1)
    rows = (np.arange(image.shape[0]) // 10 % 3 == 0)[:, None]
    image[garment & rows] = (240, 240, 236)  # white stripes over a third of a navy garment
    swatches = descriptor.analyse(Image.fromarray(image)).colours
    assert 1 <= len(swatches) <= descriptor.SWATCHES
    assert [s["share"] for s in swatches] == sorted((s["share"] for s in swatches), reverse=True)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", s["hex"]) and s["name"] in descriptor.COLOUR_NAMES for s in swatches)
    assert swatches[0]["name"] == "navy" and swatches[1]["name"] in ("white", "light grey")
    assert 0.25 <= swatches[1]["share"] <= 0.45


def test_the_wall_colour_does_not_decide_the_match():
    # The same red garment on a beige and on a grey wall stays closer to a red packshot than to a khaki one.
    red, khaki = descriptor.describe(solid("red")), descriptor.describe(solid("khaki"))
    for wall in ((196, 186, 166), (150, 150, 146)):
        query = descriptor.describe(garment_on_wall(wall=wall, light=True))
        assert float(query @ red) > float(query @ khaki) + 0.1, wall


def test_white_balance_pulls_a_tinted_backdrop_towards_grey():
    # A grey garment on a light grey wall, photographed under a warm (tungsten-like) cast.
    neutral = np.asarray(garment_on_wall(garment=(110, 110, 110), wall=(190, 190, 190)), dtype=np.float32)
    warm = Image.fromarray(np.clip(neutral * np.array([1.15, 1.0, 0.82]), 0, 255).astype(np.uint8))
    isolated = descriptor.isolate(warm)
    # The cast on the garment is at least halved (the gains go half-way: a beige wall is no grey one).
    garment = isolated.rgb[isolated.weight > 0.95].mean(axis=0)
    cast = np.ptp(np.array([110 * 1.15, 110, 110 * 0.82]) / 255)
    assert np.ptp(garment) < 0.6 * cast


def test_isolation_is_deterministic():
    image = garment_on_wall(light=True)
    first, second = descriptor.isolate(image), descriptor.isolate(image)
    assert np.array_equal(first.rgb, second.rgb) and np.array_equal(first.weight, second.weight)
    assert np.array_equal(first.fabric, second.fabric)


def test_a_big_catalog_photo_is_described_from_the_same_decode_as_the_same_photo_as_a_query():
    # 2400 px on the shorter side: the query path decodes it at half scale (a JPEG draft); an import
    # that decoded it at full size would describe another image than a search of the same file
    image = solid("teal", category="dress").resize((2400, 2400), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    data = buf.getvalue()
    as_query = descriptor.describe(intake.open_image(intake.validate_image_bytes(data)))
    assert np.array_equal(load.describe_bytes(data, "image/jpeg"), as_query)
    row = load.CatalogRow(sku="BIG-1", name="Big", category="dress", price=1, currency="EUR", image_data=data,
                          image_content_type="image/jpeg", image_url=None, attributes={}, image=None)
    # every embedder, ours or an ONNX model, gets the catalog photo decoded that way
    assert np.array_equal(load._vectors([row], load.DescriptorEmbedder())[0], as_query)
    with Image.open(io.BytesIO(data)) as full:
        assert not np.array_equal(descriptor.describe(full.convert("RGB")), as_query)  # the decode matters


def striped_garment_on_wall(angle_deg: float, period: float = 14.0, wall=(196, 186, 166)) -> Image.Image:
    """A navy garment with white stripes at `angle_deg`, on a beige wall (drawn here, not by the demo catalog)."""
    image = np.asarray(garment_on_wall(garment=(30, 40, 90), wall=wall), dtype=np.uint8).copy()
    garment = (image == (30, 40, 90)).all(axis=-1)
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    a = np.deg2rad(angle_deg)
    stripes = ((xx * np.cos(a) + yy * np.sin(a)) % period) < period * 0.35
    image[garment & stripes] = (236, 236, 232)
    return Image.fromarray(image)


def test_stripes_at_any_angle_match_stripes_not_plain_fabric():
    striped = descriptor.describe(demo.render_item_image("dress", "navy", "striped", np.random.default_rng(2),
                                                         secondary="white"))
    plain = descriptor.describe(demo.render_item_image("dress", "navy", "solid", np.random.default_rng(2)))
    for angle in (0, 30, 60, 90):
        query = descriptor.describe(striped_garment_on_wall(angle))
        assert float(query @ striped) > float(query @ plain), angle


def test_the_fabric_block_does_not_change_when_the_print_turns():
    blocks = []
    for angle in (10, 55, 100):
        garment = descriptor.isolate(striped_garment_on_wall(angle))
        blocks.append(descriptor._fabric_block(garment.fabric, garment.fabric_mask))
    plain = descriptor.isolate(garment_on_wall(garment=(30, 40, 90), wall=(196, 186, 166)))
    plain_block = descriptor._fabric_block(plain.fabric, plain.fabric_mask)
    unit = [descriptor._unit(b) for b in blocks]
    # the crop is squeezed to a square, so a turn changes the period a little: close, not equal
    turned = min(float(a @ b) for a in unit for b in unit)
    assert turned > 0.7
    assert max(float(u @ descriptor._unit(plain_block)) for u in unit) < turned - 0.2


def test_a_plain_packshot_is_cut_without_grabcut_and_a_wall_photo_with_it(monkeypatch):
    calls = []
    real = descriptor._grabcut
    monkeypatch.setattr(descriptor, "_grabcut", lambda small: calls.append(1) or real(small))
    packshot = descriptor.isolate(solid("red"))
    assert calls == [] and packshot.weight[24:40, 24:40].min() > 0.9  # the garment fills its crop
    descriptor.isolate(garment_on_wall(light=True))
    assert calls == [1]
    # a white garment on a near-white packshot backdrop is still found (by its rim and what differs)
    white = descriptor.isolate(solid("white"))
    assert white.weight.mean() > 0.3


# ---------------------------------------------------------------------------
# The hue block (garment-v4)
# ---------------------------------------------------------------------------


def test_the_hue_block_names_colours_under_a_dim_light_where_cielab_does_not():
    """A light at 60 % scales every channel alike: hue and saturation stay, CIELAB's chroma shrinks with it."""
    def blocks(image):
        garment = descriptor.isolate(image)
        return (descriptor._unit(descriptor._centred(descriptor._hue_block(garment.rgb, garment.weight))),
                descriptor._unit(descriptor._centred(descriptor._colour_block(garment.rgb, garment.weight))))

    references = {name: blocks(solid(name, seed=1)) for name in demo.PALETTE}
    right = [0, 0]
    for name in demo.PALETTE:
        dim = Image.fromarray((np.asarray(solid(name), dtype=np.float32) * 0.6).astype(np.uint8))
        query = blocks(dim)
        for block in (0, 1):
            nearest = max(references, key=lambda n: float(references[n][block] @ query[block]))
            right[block] += nearest == name
    hue_right, lab_right = right
    assert hue_right >= len(demo.PALETTE) // 2 and hue_right >= lab_right + 4, right


def test_a_near_grey_has_every_hue_alike_in_the_hue_block():
    noisy_grey = np.clip(128 + np.random.default_rng(0).normal(0, 6, (64, 64, 3)), 0, 255) / 255
    shares = descriptor._hue_block(noisy_grey.astype(np.float32), np.ones((64, 64), np.float32))
    per_hue = (shares ** (1 / descriptor.COLOUR_POWER)).reshape(
        descriptor.HUE_V_BINS, descriptor.HUE_S_BINS, descriptor.HUE_H_BINS).sum(axis=(0, 1))
    # camera noise gives a grey random hues; they carry no colour, so no hue may stand out
    assert per_hue.max() < 1.1 * per_hue.min()
    assert descriptor._hue_block(noisy_grey.astype(np.float32), np.ones((64, 64), np.float32)).shape == (
        descriptor.HUE_DIM,)


def test_the_colour_blocks_count_a_blurred_print_by_its_two_colours_not_the_mixtures_between():
    # red and blue bands, blurred as a photo blurs them: the pixels across each seam are purple mixtures
    bands = np.where((np.arange(64) // 8 % 2 == 0)[None, :, None], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8])
    rgb = cv2.GaussianBlur(np.repeat(bands, 64, axis=0).astype(np.float32), (0, 0), 1.5)
    magnitude, _ = descriptor._gradients(rgb)
    weight = descriptor._flat_weight(np.ones((64, 64), np.float32), magnitude)
    mixed = np.abs(rgb[..., 0] - rgb[..., 2]) < 0.3  # neither red nor blue
    assert mixed.any() and (~mixed).any()
    assert weight[mixed].mean() < 0.5 * weight[~mixed].mean()
    assert weight.max() <= 1.0

"""The embedded default dataset: multi-label image-text pairs shaped like MIRFlickr-25K.

Generated in a few seconds, deterministic by seed, no downloads.

Labels. 24 concepts with MIRFlickr's names and a Zipf-like frequency (``sky`` and ``people``
common, ``baby`` rare). Each item draws 1 to 4 concepts (P = .35/.35/.2/.1); a child concept pulls
in its parent with probability .8 when there is room (``dog`` -> ``animals``, ``sea`` -> ``water``,
``male`` -> ``people``...), so labels co-occur as in real tag data.

Images (uint8, 3 x S x S). Five concepts are scenes and change the background (``night``
darkens it, ``sky`` adds a blue upper band, ``sunset`` an orange gradient, ``water`` a wavy blue
lower band, ``indoor`` a brown wall with a grid). The other 19 are objects: each has a shape
(disk, square, triangle, ring, cross, diamond, bar), a colour and a texture (solid, stripes,
checks, dots), chosen so that concepts share attributes pairwise (``dog`` and ``car`` share a
colour, ``bird`` and ``flower`` a shape), and are drawn 1-2 times at random positions and sizes
with colour jitter; 15% of the time an object is drawn small. Every image also gets 2-4 clutter
shapes of random colour and shape, a random brightness/contrast change and Gaussian pixel noise.

Texts (binary bag-of-words over ~200 tags, like YAll). Each present concept is left untagged with
probability .2 (missing tags); otherwise 1-3 of its words (name and synonyms) are used. Each item
gets Poisson(3) distractor tags (camera brands, places, years, "explore", ...) and, with
probability .15, a word of a concept it does not have (wrong tags). Captions are the tag lists
joined by spaces; no item ends with an empty text.

With the default 3,000 items, random codes score near the label prior (the fraction of
database items sharing a label with a query, about .37) and a trained method clearly above it.
"""
from __future__ import annotations

import numpy as np

from ..registry import register_dataset
from .base import PairedData, validate_paired
from .protocol import LoadedDataset

CONCEPTS = ["animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor",
            "lake", "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky",
            "structures", "sunset", "transport", "tree", "water"]

WORDS = {
    "animals": ["animals", "animal", "wildlife", "zoo"], "baby": ["baby", "infant", "newborn"],
    "bird": ["bird", "birds", "feathers", "wings"], "car": ["car", "auto", "vehicle", "driving"],
    "clouds": ["clouds", "cloud", "cloudy", "overcast"], "dog": ["dog", "puppy", "canine", "pet"],
    "female": ["female", "woman", "girl", "she"], "flower": ["flower", "flowers", "bloom", "petals"],
    "food": ["food", "dinner", "delicious", "meal"], "indoor": ["indoor", "inside", "room", "home"],
    "lake": ["lake", "pond", "reflection", "shore"], "male": ["male", "man", "guy", "boy"],
    "night": ["night", "dark", "nightshot", "lights"], "people": ["people", "person", "crowd", "friends"],
    "plant_life": ["plants", "green", "garden", "leaves"], "portrait": ["portrait", "face", "smile", "eyes"],
    "river": ["river", "stream", "creek", "bridge"], "sea": ["sea", "ocean", "beach", "waves"],
    "sky": ["sky", "blue", "horizon", "skyline"], "structures": ["building", "architecture", "tower", "city"],
    "sunset": ["sunset", "dusk", "orange", "golden"], "transport": ["transport", "train", "bus", "travel"],
    "tree": ["tree", "trees", "forest", "branches"], "water": ["water", "wet", "splash", "aqua"],
}

DISTRACTORS = (
    "canon nikon sony olympus pentax 2006 2007 2008 2009 explore interestingness photo photography "
    "nature travel vacation holiday summer winter spring autumn europe usa london paris newyork "
    "california japan italy family trip art bw blackandwhite color colour light macro closeup "
    "street urban landscape film digital camera square d80 d200 400d 350d 30d flickr top "
    "favorite beautiful cute fun happy love me my friend party wedding birthday christmas "
    "music concert show festival sport game school work old new red yellow purple white pink "
    "black shadow sun rain snow fog morning day evening weekend road park lomo hdr tokyo berlin"
).split()

SCENES = {"night", "sky", "sunset", "water", "indoor"}
PARENT = {"dog": "animals", "bird": "animals", "sea": "water", "lake": "water", "river": "water",
          "male": "people", "female": "people", "baby": "people", "portrait": "people",
          "car": "transport", "tree": "plant_life", "flower": "plant_life", "clouds": "sky"}

_PALETTE = np.array([[220, 40, 40], [40, 170, 60], [50, 80, 220], [235, 200, 40], [200, 60, 200],
                     [40, 200, 210], [240, 130, 30], [130, 80, 40], [240, 240, 240], [90, 90, 90]], np.float32)
_SHAPES = ["disk", "square", "triangle", "ring", "cross", "diamond", "hbar", "vbar"]
_TEXTURES = ["solid", "stripes", "checks", "dots"]


def _object_specs() -> dict[str, tuple[str, int, str]]:
    """(shape, palette colour, texture) per object concept; attributes overlap on purpose."""
    objs = [c for c in CONCEPTS if c not in SCENES]
    specs = {}
    for i, c in enumerate(objs):
        specs[c] = (_SHAPES[i % len(_SHAPES)], (i * 3) % len(_PALETTE), _TEXTURES[(i // 2) % len(_TEXTURES)])
    return specs


_OBJ = _object_specs()


def _sample_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    c = len(CONCEPTS)
    freq = 1.0 / np.arange(1, c + 1) ** 0.7
    # MIRFlickr-like popularity order: the first name gets the highest frequency
    popular = ["sky", "people", "plant_life", "structures", "night", "clouds", "female", "indoor", "tree",
               "male", "water", "portrait", "transport", "sunset", "animals", "flower", "sea", "food",
               "car", "dog", "lake", "river", "bird", "baby"]
    p = np.empty(c)
    for rank, name in enumerate(popular):
        p[CONCEPTS.index(name)] = freq[rank]
    p /= p.sum()
    labels = np.zeros((n, c), np.uint8)
    k_items = rng.choice([1, 2, 3, 4], size=n, p=[0.35, 0.35, 0.2, 0.1])
    for i in range(n):
        picks = list(rng.choice(c, size=k_items[i], replace=False, p=p))
        for j in list(picks):
            parent = PARENT.get(CONCEPTS[j])
            if parent and len(picks) < 4 and CONCEPTS.index(parent) not in picks and rng.random() < 0.8:
                picks.append(CONCEPTS.index(parent))
        labels[i, picks] = 1
    return labels


def _shape_mask(shape: str, yy, xx, cy, cx, r) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if shape == "disk":
        return dy**2 + dx**2 <= r**2
    if shape == "square":
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    if shape == "triangle":
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if shape == "ring":
        d2 = dy**2 + dx**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if shape == "cross":
        return ((np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r)) | ((np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r))
    if shape == "diamond":
        return np.abs(dy) + np.abs(dx) <= r
    if shape == "hbar":
        return (np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r * 1.2)
    return (np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r * 1.2)  # vbar


def _texture(tex: str, yy, xx, phase: float, period: float) -> np.ndarray:
    """Multiplier in [0.45, 1] that paints the texture inside an object."""
    if tex == "solid":
        return np.ones_like(yy)
    if tex == "stripes":
        return np.where(((xx + yy + phase) // period) % 2 == 0, 1.0, 0.45)
    if tex == "checks":
        return np.where(((xx // period) + (yy // period)) % 2 == 0, 1.0, 0.45)
    return np.where(((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) <= (period / 3) ** 2, 0.45, 1.0)


def _render(rng: np.random.Generator, concepts: list[str], s: int) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    c1, c2 = rng.uniform(60, 200, 3), rng.uniform(60, 200, 3)
    t = (yy / s)[..., None]
    img = c1 * (1 - t) + c2 * t  # (S, S, 3) background gradient
    if "indoor" in concepts:
        img = np.broadcast_to(np.array([150, 110, 75], np.float32), img.shape).copy() * rng.uniform(0.8, 1.1)
        grid = ((xx % (s // 6)) < 2) | ((yy % (s // 6)) < 2)
        img[grid] *= 0.6
    if "sunset" in concepts:
        img = np.array([250, 140, 40], np.float32) * (1 - t) + np.array([120, 40, 80], np.float32) * t
    if "sky" in concepts:
        band = int(s * rng.uniform(0.3, 0.5))
        img[:band] = np.array([90, 150, 235], np.float32) * rng.uniform(0.85, 1.1)
    if "water" in concepts:
        top = int(s * rng.uniform(0.55, 0.7))
        wave = (np.sin(xx[top:] / 3.0 + yy[top:] / 1.5) > 0.3)[..., None]
        img[top:] = np.where(wave, [70, 140, 200], [30, 90, 170]).astype(np.float32)
    if "night" in concepts:
        img *= 0.3
    # clutter: random shapes in random colours
    for _ in range(rng.integers(2, 5)):
        m = _shape_mask(_SHAPES[rng.integers(len(_SHAPES))], yy, xx, rng.uniform(0, s), rng.uniform(0, s),
                        rng.uniform(0.05, 0.12) * s)
        img[m] = rng.uniform(0, 255, 3)
    # concept objects
    for c in concepts:
        if c in SCENES:
            continue
        shape, col, tex = _OBJ[c]
        for _ in range(rng.integers(1, 3)):
            small = rng.random() < 0.15
            r = rng.uniform(0.07, 0.11) * s if small else rng.uniform(0.13, 0.24) * s
            cy, cx = rng.uniform(r, s - r), rng.uniform(r, s - r)
            m = _shape_mask(shape, yy, xx, cy, cx, r)
            colour = np.clip(_PALETTE[col] + rng.normal(0, 18, 3), 0, 255)
            mult = _texture(tex, yy, xx, rng.uniform(0, 8), max(3.0, s / 16))
            img[m] = colour * mult[m][:, None]
    img = img * rng.uniform(0.75, 1.2) + rng.uniform(-25, 25)  # brightness / contrast
    img = img + rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def _tags(rng: np.random.Generator, concepts: list[str]) -> list[str]:
    tags: list[str] = []
    for c in concepts:
        if rng.random() < 0.2:
            continue  # missing tags
        words = WORDS[c]
        k = rng.integers(1, 4)
        tags += [words[i] for i in rng.choice(len(words), size=min(k, len(words)), replace=False)]
    tags += [DISTRACTORS[i] for i in rng.choice(len(DISTRACTORS), size=rng.poisson(3))]
    if rng.random() < 0.15:
        absent = [c for c in CONCEPTS if c not in concepts]
        tags.append(rng.choice(WORDS[absent[rng.integers(len(absent))]]))
    if not tags:
        tags.append(DISTRACTORS[rng.integers(len(DISTRACTORS))])
    rng.shuffle(tags)
    return list(dict.fromkeys(tags))


def vocabulary() -> list[str]:
    return list(dict.fromkeys([w for c in CONCEPTS for w in WORDS[c]] + DISTRACTORS))


def make_synthetic(n_items: int = 3000, image_size: int = 96, seed: int = 0) -> PairedData:
    """Generate the embedded dataset (see the module docstring). Deterministic by ``seed``."""
    if n_items < 10:
        raise ValueError("the synthetic dataset needs at least 10 items")
    if image_size < 32:
        raise ValueError("image_size must be at least 32 pixels")
    rng = np.random.default_rng(seed)
    labels = _sample_labels(rng, n_items)
    vocab = vocabulary()
    index = {w: i for i, w in enumerate(vocab)}
    images = np.empty((n_items, 3, image_size, image_size), np.uint8)
    texts = np.zeros((n_items, len(vocab)), np.float32)
    captions = []
    for i in range(n_items):
        concepts = [CONCEPTS[j] for j in np.flatnonzero(labels[i])]
        images[i] = _render(rng, concepts, image_size)
        tags = _tags(rng, concepts)
        texts[i, [index[t] for t in tags]] = 1.0
        captions.append(" ".join(tags))
    data = PairedData(images, texts, labels, name="synthetic", image_kind="pixels", vocab=vocab,
                      label_names=list(CONCEPTS), captions=captions,
                      info={"generator": "cmhash.data.synthetic", "seed": seed, "n_items": n_items,
                            "image_size": image_size})
    return validate_paired(data, "synthetic")


def synthetic_texts(n_items: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Texts of ``n_items`` new items drawn as the embedded dataset's are (labels, then tags), with
    no images: (bag-of-words (n, V) float32 over ``vocabulary()``, labels (n, 24) uint8). Cheap
    (about 10 us an item), for search benchmarks that need many distinct items."""
    rng = np.random.default_rng([seed, n_items])
    labels = _sample_labels(rng, n_items)
    index = {w: i for i, w in enumerate(vocabulary())}
    texts = np.zeros((n_items, len(index)), np.float32)
    for i in range(n_items):
        tags = _tags(rng, [CONCEPTS[j] for j in np.flatnonzero(labels[i])])
        texts[i, [index[t] for t in tags]] = 1.0
    return texts, labels


@register_dataset("synthetic", help="embedded demo set: rendered multi-label images + noisy tag bags (no download)")
def load_synthetic(root=None, n_items: int = 3000, image_size: int = 96, seed: int = 0, **_):
    data = make_synthetic(n_items=n_items, image_size=image_size, seed=seed)
    n_query = max(1, n_items // 10)
    n_train = min(n_items // 2, n_items - n_query)
    return LoadedDataset(data, "djsrh", {"n_query": n_query, "n_train": n_train, "first_factor": 1})

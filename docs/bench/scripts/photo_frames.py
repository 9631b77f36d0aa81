"""Which part of a photo the frozen photo encoder should see to recognise the product in a
shopper's photo (docs/benchmarks.md, "Shop by photo sees the whole photo").

    .venv/bin/python docs/bench/scripts/photo_frames.py ../shared/benchmarks/hm \
        [--items 4000] [--aspect]

The ``mrse eval --task photo`` cases (seed 0): each altered photo is searched among its own
item and ``--items`` others drawn at random (seeded), by the frozen EfficientNet-Lite0 vector
alone (cosine of centred unit vectors), for each way of framing catalog photos and shots
alike: the centre crop (the towers' input), the whole photo squashed to 224x224, letterboxed
into it, and (``--aspect``: eager PyTorch, one photo at a time, slow) at its own aspect ratio.
Prints found@10 per framing, with the mirrored shot averaged in, and for the squashed frame
the centring variants and the 128-d sketch.
"""

from __future__ import annotations

import argparse
import io
import json
import random

import numpy as np
import torch
from PIL import Image

from mrse.data.dataset import load_dataset
from mrse.encoders.image import FRAMES, ImageEncoder, preprocess
from mrse.evaluation.photo import alter_photo, photo_cases
from mrse.features.photo import photo_sketch


def _tensor(im: Image.Image) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)
    return (x / 255.0 - 0.498) / 0.502


def _rgb(data) -> Image.Image:
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        return im.convert("RGB")


def letterbox(data) -> torch.Tensor:
    im = _rgb(data)
    s = 224 / max(im.size)
    im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.BILINEAR)
    canvas = Image.new("RGB", (224, 224), (255, 255, 255))
    canvas.paste(im, ((224 - im.size[0]) // 2, (224 - im.size[1]) // 2))
    return _tensor(canvas)


def aspect(data) -> torch.Tensor:
    im = _rgb(data)
    s = 224 / min(im.size)
    return _tensor(im.resize((max(224, round(im.size[0] * s)), max(224, round(im.size[1] * s)))))


def _cu(x, m):
    x = x - m
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--items", type=int, default=4000)
    ap.add_argument("--aspect", action="store_true")
    args = ap.parse_args()
    ds = load_dataset(args.data)
    cases, photos = photo_cases(ds, seed=0)
    seeds = sorted({c.seed for c in cases})
    others = [i for i in ds.items["item_id"] if photos.get(i) and i not in set(seeds)]
    rng = np.random.default_rng(0)
    catalog = seeds + list(rng.choice(others, size=min(args.items, len(others)), replace=False))
    target = np.array([catalog.index(c.seed) for c in cases])
    shots = [alter_photo(photos[c.seed], random.Random(f"0:{c.query_id}")) for c in cases]
    encoder = ImageEncoder(backend="torch" if args.aspect else "auto")

    def encode(prep, items, flip=False):
        out = []
        for x in items:  # one at a time: the aspect frame has no fixed size
            t = prep(x)
            out.append(torch.flip(t, dims=[2]) if flip else t)
        if args.aspect and prep is aspect:
            with torch.inference_mode():
                return np.stack([encoder.model.features(t[None]).numpy()[0] for t in out])
        return np.concatenate([encoder.encode_tensors(torch.stack(out[s : s + 64]))
                               for s in range(0, len(out), 64)])  # fmt: skip

    def found(scores):
        rank = (scores > scores[np.arange(len(scores)), target][:, None]).sum(1)
        return round(float((rank < 10).mean()), 3)

    framings = {
        "centre crop": lambda d: preprocess(d, ("centre",)),
        "whole, squashed": lambda d: preprocess(d, ("whole",)),
        "whole, letterboxed": letterbox,
    }
    if args.aspect:
        framings["whole, own aspect"] = aspect
    assert set(FRAMES) == {"centre", "whole"}
    result, squashed = {}, None
    for name, prep in framings.items():
        cat = encode(prep, [photos[i] for i in catalog])
        q, qf = encode(prep, shots), encode(prep, shots, flip=True)
        m = cat.mean(0)
        result[name] = found(_cu(q, m) @ _cu(cat, m).T)
        result[name + " + mirrored shot"] = found(_cu(_cu(q, m) + _cu(qf, m), 0) @ _cu(cat, m).T)
        if name == "whole, squashed":
            squashed = (cat, q)
        print(json.dumps(result), flush=True)
    cat, q = squashed
    centre_mean = encode(framings["centre crop"], [photos[i] for i in catalog]).mean(0)
    for name, m in (("own mean", cat.mean(0)), ("centre-crop mean", centre_mean), ("none", 0)):
        result[f"whole, squashed, centred with {name}"] = found(_cu(q, m) @ _cu(cat, m).T)
        result[f"whole, squashed, centred with {name}, sketch"] = found(
            photo_sketch(_cu(q, m)) @ photo_sketch(_cu(cat, m)).T
        )
    print(json.dumps({"cases": len(cases), "items": len(catalog), "found@10": result}, indent=1))


if __name__ == "__main__":
    main()

"""The shapes set's sample grid for docs/text-to-image-data.md: a row per caption form, 8 images each.

    PYTHONPATH=. python benchmarks/shapes_grid.py [--out docs/shapes-grid.png]

Each row is one caption form (one shape, two shapes; training and held-out phrasings), its images
drawn from random attributes with the seeded renderer; the last row is the held-out combinations.
Prints each row's form and its first image's caption.
"""
import argparse

import numpy as np

from genforge.data import shapes
from genforge.images import save_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/shapes-grid.png", help="PNG to write")
    ap.add_argument("--seed", type=int, default=0, help="seed of attributes and renders")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = [(split, form, False) for forms in (shapes.ONE_FORMS, shapes.TWO_FORMS) for split in forms
            for form in forms[split]] + [("train", None, True)]
    images = []
    for i, (split, form, held_out) in enumerate(rows):
        two = "{shape2}" in (form or "")
        for col in range(8):
            while True:  # draw attributes with as many shapes as the form names
                attrs = shapes.sample_attributes(rng, held_out_combo=held_out)
                if form is None or ("relation" in attrs) == two:
                    break
            images.append(shapes.render(attrs, rng))
            if col == 0:
                text = shapes.caption(attrs, rng) if form is None else shapes.phrase(form, attrs)
                print(f"row {i + 1}: {'held-out combination' if held_out else split + ' form'} "
                      f"{form or ''!r}: e.g. {text!r}")
    save_grid(np.stack(images), args.out, ncols=8, scale=3)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Writes small synthetic seed images for the `image` fuzz target (no face data): one per
decoding path of dynface's loader. Run: python3 fuzz/seeds/make_image_seeds.py OUT_DIR"""
import io
import sys
from pathlib import Path

from PIL import Image

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)


def gradient(mode, w=12, h=10):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 21) % 256, (y * 25) % 256, (x * y * 7) % 256) for y in range(h) for x in range(w)])
    return im.convert(mode) if mode != "RGB" else im


gradient("RGB").save(out / "rgb8.png")
gradient("RGBA").save(out / "rgba8.png")
gradient("L").save(out / "gray8.png")
gradient("LA").save(out / "graya8.png")
gradient("P").save(out / "palette.png")
Image.new("I;16", (9, 7), 40000).save(out / "gray16.png")
gradient("RGB").save(out / "rgb.jpg", quality=80)
gradient("RGB").save(out / "progressive.jpg", quality=70, progressive=True)
gradient("L").save(out / "gray.jpg")
gradient("CMYK").save(out / "cmyk.jpg")
exif = Image.Exif()
exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
gradient("RGB", 14, 8).save(out / "exif6.jpg", exif=exif.tobytes())
print("wrote", len(list(out.iterdir())), "seeds to", out)

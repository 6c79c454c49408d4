"""Records which generator scripts (and reference package versions) produced each golden
fixture: tests/fixtures/provenance.json, checked by tests/fixture_provenance.rs, which fails
when a committed generator no longer matches the hash recorded for its fixtures (the fixture
is then stale: regenerate it, then rerun this script).

Run after regenerating fixtures, with the Python that generated them:
    /work/venv/bin/python tools/reference/provenance.py
Without the reference packages installed (no torch), --versions-from-requirements records the
pins of requirements.txt instead, and says so in the file.
"""

import hashlib
import json
import os
import sys
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "provenance.json")

# fixture path (under tests/fixtures) -> (generator scripts incl. the local modules they
# import, the reference packages whose code or numbers the fixture holds)
FIXTURES = {
    "unet": (["gen_unet_golden.py", "difface_unet.py", "refcommon.py"],
             ["torch", "safetensors", "guided-diffusion-sdk"]),
    "swinir": (["gen_swinir_golden.py", "basicsr_swinir.py", "refcommon.py"],
               ["torch", "safetensors", "basicsr"]),
    "pth": (["gen_pth_fixtures.py"], ["torch", "safetensors"]),
    "align/lmeds.json": (["gen_lmeds_golden.py"], ["numpy", "opencv-python-headless"]),
    "retinaface": (["gen_retinaface_golden.py", "refcommon.py"],
                   ["torch", "torchvision", "numpy", "safetensors", "opencv-python-headless", "facexlib"]),
    "mtcnn/photos.json": (["gen_mtcnn_golden.py"], ["torch", "torchvision", "numpy", "facenet-pytorch"]),
    "pth/reader": (["gen_pth_reader_fixtures.py"], ["torch"]),
    "metrics/metrics.json": (["ssim_reference.py"], ["numpy", "scikit-image", "scipy", "pillow"]),
    "metrics/expected.json": (["ssim_fixture.py"], ["numpy", "scikit-image", "scipy", "pillow"]),
}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def pins():
    out = {}
    for line in open(os.path.join(HERE, "requirements.txt")):
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            out[name.strip().lower()] = version.strip()
    return out


def main():
    from_requirements = "--versions-from-requirements" in sys.argv
    pinned = pins()
    entries = []
    for fixture, (scripts, packages) in FIXTURES.items():
        versions = {}
        for p in packages:
            if from_requirements:
                versions[p] = pinned[p]
            else:
                try:
                    versions[p] = metadata.version(p)
                except metadata.PackageNotFoundError:
                    sys.exit(f"provenance: {p} is not installed here; run with the Python that "
                             "generated the fixtures, or pass --versions-from-requirements")
        entries.append({
            "fixture": fixture,
            "generators": {f"tools/reference/{s}": sha256(os.path.join(HERE, s)) for s in scripts},
            "versions": versions,
        })
    doc = {
        "about": "tools/reference/provenance.py: generator script hashes and reference package "
                 "versions per fixture; tests/fixture_provenance.rs fails when a generator changes",
        "versions_source": "requirements.txt pins (reference packages not installed when recorded)"
                           if from_requirements else f"installed packages, Python {sys.version.split()[0]}",
        "fixtures": entries,
    }
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, OUT)
    print(f"wrote {OUT}: {len(entries)} fixtures")


if __name__ == "__main__":
    main()

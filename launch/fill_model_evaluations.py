"""Write each shipped jpegedit model's Kodak evaluation into its provenance (``jpegedit/models/*.json``,
field ``evaluation``), from the curves ``jpegedit evaluate`` measured into a results folder:

    python launch/fill_model_evaluations.py results/kodak [--check]
    python launch/fill_model_evaluations.py results/kodak_lite0 --data ../shared/data/kodak


For every model: the mean bpp, PSNR, MS-SSIM and LPIPS of its files over the folder's images, per
file kind (``std``: baseline, standard Huffman - the paper's; ``opt``: baseline, optimised Huffman;
``prog``: progressive, when measured), with the results file and the command that made it. The
weights (``.npz``) and their sha256 are not touched. ``--check`` writes nothing and exits 1 when a
model's recorded evaluation differs from the folder's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compat.cli import write_atomic  # noqa: E402
from jpegedit.baselines import family  # noqa: E402
from jpegedit.models import MODELS_DIR, list_models  # noqa: E402

KINDS = ("std", "opt", "prog")


def evaluations(results: Path, data: str | None = None) -> dict[str, dict]:
    """Each model's evaluation in ``results`` (measured on the images of ``data``, default
    ``../shared/data/<results folder's name>``); LPIPS is None where the folder was measured without it."""
    data = data or f"../shared/data/{results.name}"
    shown = results.relative_to(ROOT) if results.is_relative_to(ROOT) else results
    out: dict[str, dict] = {}
    for name in list_models():
        rows = {}
        for kind in KINDS:
            path = results / f"learned-{family(name)}-{kind}.json"
            if not path.exists():
                continue
            doc = json.loads(path.read_text())
            mean = [m for m in doc["mean"] if m["model"] == name]
            if mean:
                m = mean[0]
                rows[kind] = {k: m.get(k) for k in ("bpp", "psnr", "ms_ssim", "lpips", "images")}
                rows[kind]["file"] = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        if rows:
            out[name] = {
                "set": Path(data).name,
                "command": f"jpegedit evaluate --data {data} -o {shown} --force",
                "files": rows,
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="a jpegedit evaluate folder, e.g. results/kodak")
    ap.add_argument("--data", default=None, help="the images it measured (default ../shared/data/<RESULTS name>)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if any recorded evaluation differs")
    args = ap.parse_args(argv)
    found = evaluations(Path(args.results).resolve(), args.data)
    stale = []
    for name, ev in found.items():
        path = MODELS_DIR / f"{name}.json"
        meta = json.loads(path.read_text())
        if meta.get("evaluation") == ev:
            continue
        stale.append(name)
        if not args.check:
            meta["evaluation"] = ev
            write_atomic(path, json.dumps(meta, indent=1).encode(), force=True)
    print(f"{len(found)} models evaluated in {args.results}; {len(stale)} {'differ' if args.check else 'updated'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

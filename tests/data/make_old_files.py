"""Make the files tests/test_legacy_files.py loads, with fusionrec as it was at commit 103e962.

    git worktree add --detach /tmp/fusionrec-103e962 103e962
    cd /tmp/fusionrec-103e962 && PYTHONPATH=$PWD python /path/to/tests/data/make_old_files.py OUT/

Run at that commit, this pickles a late-fused classifier and a fused index under the names
of the time (``weights`` for the block lengths, ``n_jobs`` for the CNN's threads) and records
their answers to six demo photos. The CNN's input (160 px, cropped to 128) stays above half
the demo photos' 256 px, so decoding JPEGs at reduced scale, added later, does not apply.
"""

import sys
from pathlib import Path

import joblib
import numpy as np

from fusionrec import BagOfVisualWords, CNNEmbedder, FusedClassifier, __version__
from fusionrec.datasets import load_demo_products
from fusionrec.deep import Preprocessing
from fusionrec.search import ProductIndex


def extractors() -> dict:
    preprocessing = Preprocessing(resize=160, crop=128, mean=(0.5,) * 3, std=(0.5,) * 3)
    return {
        "traditional": BagOfVisualWords(max_side=160, n_words=8, random_state=0),
        "deep": CNNEmbedder(
            "small_cnn",
            None,
            preprocessing=preprocessing,
            runtime="torch",
            n_jobs=2,
            random_state=0,
        ),
    }


def saved(estimator, kind: str) -> dict:
    return {
        "format": f"fusionrec-{kind}",
        "version": 1,
        "fusionrec": __version__,
        "model": estimator,
        "about": {"made by": "tests/data/make_old_files.py at 103e962"},
    }


def main(out: Path) -> None:
    demo = load_demo_products()
    labels = np.asarray(demo.target_names, dtype=object)[demo.target]
    queries = demo.data[1::25]
    model = FusedClassifier("fused", fusion="late", weights=(0.7, 1.0), random_state=0)
    model.set_params(**extractors()).fit(demo.data[::3], labels[::3])
    catalogue = demo.data[::5]
    index = ProductIndex("fused", weights=(0.7, 1.0), **extractors())
    index.fit(catalogue, ids=np.arange(len(catalogue)))
    matches = index.query(queries, k=3)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(saved(model, "model"), out / "old_model.joblib")
    joblib.dump(saved(index, "index"), out / "old_index.joblib")
    np.savez(
        out / "old_answers.npz",
        proba=model.predict_proba(queries),
        ids=np.array([m.ids.astype(int) for m in matches]),
        scores=np.array([m.scores for m in matches]),
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Search by photo: index a catalogue, then find the products a shopper photographed.

Runs offline on the bundled demo photos in about a minute on 2 CPU cores:

    python examples/search_by_photo.py
"""

from pathlib import Path

import numpy as np

import fusionrec
from fusionrec import ProductIndex
from fusionrec.datasets import load_demo_products

demo = load_demo_products()
products = np.array(demo.target_names)[demo.target]

# The first photo of each product plays the shopper's query; the rest is the catalogue.
queries = np.r_[[np.flatnonzero(demo.target == label)[0] for label in range(10)]]
catalogue = np.setdiff1d(np.arange(len(demo.data)), queries)
ids = [f"{products[i]}/{Path(demo.data[i]).name}" for i in catalogue]

# Deep features find candidates; RANSAC-verified keypoint matches re-rank the top 20.
index = ProductIndex(rerank="ransac", rerank_depth=20).fit(demo.data[catalogue], ids)
results = index.query(demo.data[queries], k=3)

for query, matches in zip(queries, results, strict=True):
    print(f"{Path(demo.data[query]).name} ({products[query]}):")
    for item, score, inliers in zip(matches.ids, matches.scores, matches.inliers, strict=True):
        print(f"    {item:52} cosine {score:.2f}  verified matches {inliers}")

found = [matches.best.split("/")[0] for matches in results]
accuracy = np.mean(np.array(found) == products[queries])
print(f"top-1 product accuracy: {accuracy:.2f} on {len(queries)} query photos")

# Save the index to one file, which opens without running code from it; keep it up to date.
fusionrec.save(index, "catalogue.fusionrec")
index = fusionrec.load("catalogue.fusionrec")
index.remove(ids[:5])
best = index.query(demo.data[:1])[0].best
print(f"{len(index.ids_)} items after removing 5; best match for the first photo now: {best}")

"""Compare branches and fusion with GridSearchCV, each photo's features extracted once.

Run: python examples/grid_search.py

Cross-validates four settings of FusedClassifier on 105 demo photos (2 folds):
the traditional branch, the deep branch, and both fused early or late. With
``memory=``, each photo's keypoints and embedding are computed once and reused by
every fold and every setting; only the vocabularies and classifiers are refitted.
The best setting is then scored on the 45 held-out photos.
"""

import tempfile
import time

from sklearn.model_selection import GridSearchCV, train_test_split

from fusionrec import BagOfVisualWords, FusedClassifier
from fusionrec.datasets import load_demo_products

demo = load_demo_products()
train, test, y_train, y_test = train_test_split(
    demo.data, demo.target, test_size=0.3, stratify=demo.target, random_state=0
)
grid = [
    {"branch": ["traditional", "deep"]},  # fusion does not apply to a single branch
    {"branch": ["fused"], "fusion": ["early", "late"]},
]
# A small vocabulary from a bounded descriptor sample: most of the fits learn one.
keypoints = BagOfVisualWords(
    "rootsift", n_words=16, encoding="fisher", pca_components=32, max_descriptors=5_000
)

with tempfile.TemporaryDirectory() as cache:
    model = FusedClassifier(traditional=keypoints, memory=cache, random_state=0)
    search = GridSearchCV(model, grid, cv=2)
    started = time.perf_counter()
    search.fit(train, y_train)
    seconds = time.perf_counter() - started
    test_accuracy = search.score(test, y_test)

print(f"{len(search.cv_results_['params'])} settings x 2 folds in {seconds:.0f} s")
for params, score in zip(
    search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True
):
    print(f"  {params}: cross-validated accuracy {score:.3f}")
print(f"best: {search.best_params_}, test accuracy {test_accuracy:.3f}")

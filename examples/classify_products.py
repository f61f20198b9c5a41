"""Train a FusedClassifier on the demo products, evaluate it, and name a few photos.

Run: python examples/classify_products.py

Holds out 30% of the 150 bundled photos (stratified by product), trains one
classifier on both branches' features (keypoints and CNN embeddings, early
fusion), writes its evaluation report to ``classify-report/`` (JSON and a
confusion-matrix PNG), and prints the three most probable products of a few
test photos.
"""

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from fusionrec import BagOfVisualWords, FusedClassifier, evaluate
from fusionrec.datasets import load_demo_products

demo = load_demo_products()
products = np.asarray(demo.target_names, dtype=object)[demo.target]
train, test, y_train, y_test = train_test_split(
    demo.data, products, test_size=0.3, stratify=products, random_state=0
)

# The default traditional branch, with a smaller vocabulary learned from fewer descriptors:
# quick on 105 photos. FusedClassifier() alone uses the full defaults.
keypoints = BagOfVisualWords(
    "rootsift", n_words=32, encoding="fisher", pca_components=64, max_descriptors=10_000
)
model = FusedClassifier(branch="fused", fusion="early", traditional=keypoints, random_state=0)
model.fit(train, y_train)

report = evaluate(y_test, model.predict(test), output_dir="classify-report")
print(f"{len(train)} training and {len(test)} test photos of {len(model.classes_)} products")
print(f"test accuracy {report.accuracy:.3f}, macro F1 {report.macro_f1:.3f}")
print("report written to classify-report/ (report.json, confusion_matrix.png)\n")

for photo, true, probabilities in zip(
    test[:4], y_test[:4], model.predict_proba(test[:4]), strict=True
):
    best = np.argsort(probabilities)[::-1][:3]
    guesses = ", ".join(f"{model.classes_[i]} {probabilities[i]:.2f}" for i in best)
    print(f"{Path(photo).name:28} (is {true}): {guesses}")

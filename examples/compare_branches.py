"""Compare the traditional and the deep branch on the bundled demo products.

Run: python examples/compare_branches.py

Trains two scikit-learn pipelines on 70% of the 150 demo photos and scores
them on the other 30%:

- traditional: RootSIFT keypoints -> VLAD over 64 visual words -> linear SVM
- deep: EfficientNet-Lite0 embeddings (ImageNet weights, bundled) -> logistic regression
"""

import time

from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from fusionrec import BagOfVisualWords, CNNEmbedder
from fusionrec.datasets import load_demo_products

demo = load_demo_products()
train, test, y_train, y_test = train_test_split(
    demo.data, demo.target, test_size=0.3, stratify=demo.target, random_state=0
)
branches = {
    "traditional": make_pipeline(
        BagOfVisualWords("rootsift", n_words=64, encoding="vlad", max_side=256, random_state=0),
        LinearSVC(random_state=0),
    ),
    "deep": make_pipeline(CNNEmbedder(), LogisticRegression(max_iter=2000)),
}

print(f"{len(train)} training and {len(test)} test photos of {len(demo.target_names)} products")
print(f"{'branch':12} {'accuracy':>9} {'macro F1':>9} {'fit s':>7} {'predict s':>10}")
for name, model in branches.items():
    started = time.perf_counter()
    model.fit(train, y_train)
    fitted = time.perf_counter()
    predicted = model.predict(test)
    done = time.perf_counter()
    accuracy = accuracy_score(y_test, predicted)
    macro_f1 = f1_score(y_test, predicted, average="macro")
    print(
        f"{name:12} {accuracy:9.3f} {macro_f1:9.3f} {fitted - started:7.1f} {done - fitted:10.1f}"
    )

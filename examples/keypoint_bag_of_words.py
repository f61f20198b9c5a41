"""Classify the demo products with the traditional branch: keypoints -> visual words -> SVM.

Run: python examples/keypoint_bag_of_words.py

Fits a scikit-learn Pipeline (RootSIFT bag of visual words, then a linear SVM)
on 70% of the bundled demo photos and reports accuracy on the other 30%, then
compares encodings with a small GridSearchCV.
"""

from sklearn.metrics import classification_report
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from fusionrec import BagOfVisualWords
from fusionrec.datasets import load_demo_products

demo = load_demo_products()
train, test, y_train, y_test = train_test_split(
    demo.data, demo.target, test_size=0.3, stratify=demo.target, random_state=0
)

model = Pipeline(
    [
        (
            "words",
            BagOfVisualWords(
                "rootsift", n_words=64, max_side=192, max_descriptors=10_000, random_state=0
            ),
        ),
        ("svm", LinearSVC(random_state=0)),
    ]
)
model.fit(train, y_train)
report = classification_report(
    y_test, model.predict(test), target_names=demo.target_names, zero_division=0
)
print(report)

search = GridSearchCV(
    model,
    {"words__encoding": ["bovw", "vlad"]},
    cv=3,
)
search.fit(train, y_train)
for params, score in zip(
    search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True
):
    print(f"{params}: cross-validated accuracy {score:.2f}")
print(f"best: {search.best_params_}, test accuracy {search.score(test, y_test):.2f}")
